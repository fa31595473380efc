//! The `scorecl` command line, one file per subcommand. The `scorecl`
//! binary (the root package) calls [`run`]: bare, it runs the main job it
//! is given; with a subcommand, that subcommand.

mod bench;
mod compare;
mod doctor;
mod encoder;
mod eval;
mod plot;
mod probe;
mod train;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{Gpu, GpuOptions};

/// The command line: global device options and a subcommand (none: the
/// main job).
#[derive(Parser)]
#[command(
    name = "scorecl",
    version,
    about = "ScoreCL self-supervised training on any GPU (wgpu) or the CPU. Without a \
             subcommand: the main job (SimCLR ± ScoreCL on the embedded CIFAR-10 subset)"
)]
pub struct Cli {
    /// The device: `cpu` (native, Rust kernels), `gpu` (the best wgpu
    /// adapter; CPU drivers such as lavapipe last) or an adapter name
    /// substring (also SCORECL_DEVICE). Default: a real GPU if wgpu sees
    /// one, else `cpu`.
    #[arg(long, global = true)]
    device: Option<String>,
    /// Use the first adapter whose name contains this (also SCORECL_ADAPTER).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Measure speed.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCmd,
    },
    /// Encoder utilities.
    Encoder {
        #[command(subcommand)]
        what: encoder::EncoderCmd,
    },
    /// Self-supervised training (SimCLR, SimSiam, W-MSE, VICReg), with or
    /// without ScoreCL pair weights.
    Train(train::TrainArgs),
    /// Evaluate a trained backbone: k-NN or linear probe on frozen features.
    Eval {
        #[command(subcommand)]
        what: eval::EvalCmd,
    },
    /// Does the score statistic grow with augmentation strength? S per
    /// level of each augmentation family, Spearman's ρ, CSV and PNG files.
    Probe(probe::ProbeArgs),
    /// Same data and seeds, methods with ScoreCL off, on and shuffled (and
    /// the hand-crafted `augment` control), over several seeds: a table of
    /// k-NN top-1 (resumable).
    Compare(compare::CompareArgs),
    /// Draw the PNG plots of a run directory (loss, DSM loss, k-NN, pair
    /// weights) from its metrics.jsonl.
    Plot(plot::PlotArgs),
    /// Run this first on a new machine (and paste it into bug reports):
    /// every adapter wgpu sees, its backend, limits and the optional paths
    /// scorecl would use, then a GEMM and loss check against the core on
    /// the chosen adapter.
    Doctor {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn gpu(cli: &Cli) -> anyhow::Result<Gpu> {
    gpu_of_rank(
        cli,
        crate::dist::launcher_local_rank().map(|(rank, _)| rank),
    )
}

/// The device of a data-parallel run's rank `local_rank` on this machine
/// (None: the one device of a single rank).
fn gpu_of_rank(cli: &Cli, local_rank: Option<usize>) -> anyhow::Result<Gpu> {
    let mut opts = GpuOptions::from_env();
    opts.local_rank = local_rank;
    if cli.adapter.is_some() {
        opts.adapter = cli.adapter.clone();
    }
    if cli.device.is_some() {
        opts.device = cli.device.clone();
    }
    Gpu::new(&opts).context("opening the device")
}

/// Parses the command line and runs it: a subcommand, or without one the
/// main job `main_job` on the device the options choose.
pub fn run(main_job: impl FnOnce(Gpu) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        None => main_job(gpu(&cli)?),
        Some(Command::Train(a)) => train::run(&cli, a),
        Some(Command::Eval { what }) => eval::run(&cli, what),
        Some(Command::Compare(a)) => compare::run(&cli, a),
        Some(Command::Probe(a)) => probe::run(&cli, a),
        Some(Command::Doctor { json }) => doctor::run(&cli, *json),
        Some(Command::Plot(a)) => plot::run(a),
        Some(Command::Bench { what }) => bench::run(&cli, what),
        Some(Command::Encoder { what }) => encoder::run(&cli, what),
    }
}

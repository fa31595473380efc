//! The `scorecl` binary. With a subcommand (`scorecl train --help`,
//! `scorecl --help`) it is the CLI ([`scorecl::host::cli`]); bare
//! (`cargo run --release`, or `scorecl` once installed with
//! `cargo install --path .`) it runs the main job. Trains SimCLR with ScoreCL (a
//! small ResNet-18) on the project's real CIFAR-10 subset and prints the
//! k-NN top-1 on its validation images of the trained encoder next to that
//! of the same encoder at initialisation and trained without ScoreCL. The
//! runs (checkpoint, metrics, plots) go to `runs/default` and its `off/`
//! (numbered when taken).

use scorecl::host::train::TrainConfig;
use scorecl::host::Gpu;
use scorecl::main_job as job;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    scorecl::host::cli::run(main_job)
}

/// The main job on `gpu` (`--device` / `--adapter` choose it, as for every
/// subcommand).
fn main_job(gpu: Gpu) -> anyhow::Result<()> {
    let mut cfg = TrainConfig::parse(job::DEFAULT_CONFIG)?;
    job::resolve_data(&mut cfg);
    let out = job::fresh_dir(std::path::Path::new("runs/default"));
    let r = job::run(&gpu, cfg, &out, true, true)?;
    println!();
    println!(
        "k-NN top-1 on the 1,000 validation images (k {}, T {}; one seed, see docs/RESULTS.md for seeds):",
        r.trained.k, r.trained.temperature
    );
    println!(
        "  encoder at initialisation  {:6.2} %  ({}/{})",
        r.init.top1, r.init.correct, r.init.total
    );
    if let Some(off) = &r.off {
        println!(
            "  trained without ScoreCL    {:6.2} %  ({}/{})",
            off.top1, off.correct, off.total
        );
    }
    println!(
        "  trained with ScoreCL       {:6.2} %  ({}/{})",
        r.trained.top1, r.trained.correct, r.trained.total
    );
    println!(
        "wall time {:.0} s ({:.1} training images/s); run directory {} (checkpoint, metrics.jsonl, plots)",
        r.seconds,
        r.images_per_s,
        r.run_dir.display()
    );
    Ok(())
}

//! `scorecl encoder init`: a freshly initialised ResNet-18 or ResNet-50 as
//! safetensors.

use super::{gpu, Cli};
use crate::nn::{checkpoint, ResNet, ResNetConfig, Stem};
use crate::train::Choice;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum EncoderCmd {
    /// Write a freshly initialised ResNet as safetensors (torchvision
    /// names; loads into torchvision's resnet18 or resnet50 with fc
    /// removed).
    Init {
        /// Architecture: resnet18 or resnet50.
        #[arg(long, default_value = "resnet18")]
        arch: String,
        /// Base width (64: the standard ResNet-18 and ResNet-50).
        #[arg(long, default_value_t = 64)]
        width: usize,
        /// Stem: cifar (3×3, stride 1, no max-pool) or imagenet.
        #[arg(long, default_value = "cifar")]
        stem: String,
        /// Seed of the initial weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output file.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// The encoder named by `--arch`, `--width` and `--stem`.
pub(super) fn encoder_config(arch: &str, width: usize, stem: &str) -> anyhow::Result<ResNetConfig> {
    use crate::train::{Arch, StemKind};
    let stem = match StemKind::parse_for("--stem", stem)? {
        StemKind::Cifar => Stem::Cifar { padding: 1 },
        StemKind::Imagenet => Stem::ImageNet,
    };
    anyhow::ensure!(width >= 1, "--width must be at least 1");
    Ok(Arch::parse_for("--arch", arch)?.config(width, stem))
}

/// Runs `scorecl encoder …`.
pub(super) fn run(cli: &Cli, what: &EncoderCmd) -> anyhow::Result<()> {
    match what {
        EncoderCmd::Init {
            arch,
            width,
            stem,
            seed,
            out,
        } => {
            let cfg = encoder_config(arch, *width, stem)?;
            let gpu = gpu(cli)?;
            let model = ResNet::new(&gpu, cfg, *seed)?;
            checkpoint::save(&gpu, &model.store, out)?;
            println!(
                "wrote {} ({} parameters, {} tensors)",
                out.display(),
                model.store.numel(),
                model.store.params.len() + model.store.states.len() + model.store.counters.len()
            );
        }
    }
    Ok(())
}

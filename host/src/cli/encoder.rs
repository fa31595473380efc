//! `scorecl encoder init`: a freshly initialised ResNet-18 as safetensors.

use super::{gpu, Cli};
use crate::nn::{checkpoint, ResNet, ResNetConfig, Stem};
use crate::train::Choice;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum EncoderCmd {
    /// Write a freshly initialised ResNet-18 as safetensors (torchvision
    /// names; loads into torchvision's resnet18 with fc removed).
    Init {
        /// Base width (64: the standard ResNet-18).
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

pub(super) fn stem(name: &str) -> anyhow::Result<Stem> {
    use crate::train::StemKind;
    Ok(match StemKind::parse_for("--stem", name)? {
        StemKind::Cifar => Stem::Cifar { padding: 1 },
        StemKind::Imagenet => Stem::ImageNet,
    })
}

/// Runs `scorecl encoder …`.
pub(super) fn run(cli: &Cli, what: &EncoderCmd) -> anyhow::Result<()> {
    match what {
        EncoderCmd::Init {
            width,
            stem: s,
            seed,
            out,
        } => {
            let stem = stem(s)?;
            anyhow::ensure!(*width >= 1, "--width must be at least 1");
            let gpu = gpu(cli)?;
            let model = ResNet::new(&gpu, ResNetConfig::resnet18(*width, stem), *seed)?;
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

//! The typed configuration: every named value (`model.arch`, `model.stem`,
//! `data.normalize`, `optimizer.name`, `train.precision`, `scorecl.mode`,
//! `method`) read from TOML, from `--set` and from the command line, with
//! errors naming the key and the allowed names.

use scorecl_host::core::weights::WeightMode;
use scorecl_host::nn::BlockKind;
use scorecl_host::ops::conv::ConvPrecision;
use scorecl_host::train::{
    Arch, Choice, Method, NormalizeKind, OptimizerName, StemKind, TrainConfig,
};
use serde::{de::DeserializeOwned, Serialize};

/// Every name of `T` reads from TOML as the value it names and writes back
/// as that name, and `Choice::parse_for` agrees.
fn names_round_trip<T>()
where
    T: Choice + DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Wrap<T> {
        v: T,
    }
    for (name, value) in T::NAMES {
        let w: Wrap<T> = toml::from_str(&format!("v = \"{name}\"")).unwrap();
        assert_eq!(w.v, *value, "{name}");
        let back = toml::to_string(&w).unwrap();
        assert_eq!(back.trim(), format!("v = \"{name}\""), "{name}");
        assert_eq!(T::parse_for("key", name).unwrap(), *value, "{name}");
    }
    let e = T::parse_for("the.key", "nonsense").unwrap_err();
    assert_eq!(e.key, "the.key");
    for (name, _) in T::NAMES {
        assert!(e.message.contains(name), "{e}");
    }
    assert!(e.message.contains("allowed"), "{e}");
}

#[test]
fn every_named_value_reads_and_writes_its_configuration_name() {
    names_round_trip::<Arch>();
    names_round_trip::<StemKind>();
    names_round_trip::<NormalizeKind>();
    names_round_trip::<OptimizerName>();
    names_round_trip::<ConvPrecision>();
    names_round_trip::<WeightMode>();
    names_round_trip::<Method>();
}

#[test]
fn model_arch_picks_the_encoder() {
    let c = TrainConfig::parse("[model]\nwidth = 8\n").unwrap();
    assert_eq!(c.model.arch, Arch::Resnet18, "the default");
    let e = c.encoder_config();
    assert_eq!(
        (e.block, e.blocks, e.feature_dim()),
        (BlockKind::Basic, [2, 2, 2, 2], 64)
    );
    let c = TrainConfig::parse("[model]\narch = \"resnet50\"\nwidth = 8\n").unwrap();
    let e = c.encoder_config();
    assert_eq!(
        (e.block, e.blocks, e.feature_dim()),
        (BlockKind::Bottleneck, [3, 4, 6, 3], 256)
    );
}

#[test]
fn the_older_weighting_names_still_read() {
    let c = TrainConfig::parse("[scorecl]\nmode = \"uniform\"\n").unwrap();
    assert_eq!(c.scorecl.mode, WeightMode::Uniform);
    let c = TrainConfig::parse("[scorecl]\nmode = \"score\"\n").unwrap();
    assert_eq!(c.scorecl.mode, WeightMode::Score);
    // Written back under the current name.
    assert!(c.to_toml().contains("mode = \"on\""), "{}", c.to_toml());
}

#[test]
fn a_bad_name_in_toml_is_refused_naming_the_key_and_the_names() {
    for (text, key, names) in [
        (
            "[model]\narch = \"vit\"\n",
            "model.arch",
            &["resnet18", "resnet50"][..],
        ),
        (
            "[model]\nstem = \"round\"\n",
            "model.stem",
            &["cifar", "imagenet"][..],
        ),
        (
            "[data]\nnormalize = \"mnist\"\n",
            "data.normalize",
            &["cifar", "imagenet"],
        ),
        (
            "[optimizer]\nname = \"adagrad\"\n",
            "optimizer.name",
            &["lars", "sgd", "adam", "adamw"],
        ),
        (
            "[train]\nprecision = \"bf16\"\n",
            "train.precision",
            &["f32", "f16"],
        ),
        (
            "[scorecl]\nmode = \"maybe\"\n",
            "scorecl.mode",
            &["off", "on", "shuffled", "augment"],
        ),
        ("[model]\nstem = 3\n", "model.stem", &[]),
    ] {
        let e = TrainConfig::parse(text).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
        for n in names {
            assert!(e.message.contains(n), "{text}: {e}");
        }
    }
    // Through --set: the override and the key are both named.
    let base = TrainConfig::default();
    let e = base
        .with_overrides(&["optimizer.name=adagrad".to_string()])
        .unwrap_err();
    assert!(e.key.contains("--set optimizer.name=adagrad"), "{e}");
    assert!(e.key.ends_with("optimizer.name"), "{e}");
    assert!(
        e.message.contains("adagrad") && e.message.contains("lars"),
        "{e}"
    );
    // And a good one applies.
    let c = base
        .with_overrides(&[
            "optimizer.name=adamw".to_string(),
            "train.precision=f16".to_string(),
        ])
        .unwrap();
    assert_eq!(c.optimizer.name, OptimizerName::Adamw);
    assert_eq!(c.train.precision, ConvPrecision::F16);
}

#[test]
fn each_section_validates_its_own_keys() {
    let c = TrainConfig::default();
    let mut m = c.model.clone();
    m.width = 0;
    assert_eq!(m.validate().unwrap_err().key, "model.width");
    let mut o = c.optimizer.clone();
    o.beta2 = 1.0;
    assert_eq!(o.validate().unwrap_err().key, "optimizer.beta2");
    let mut t = c.train.clone();
    t.log_every = 0;
    assert_eq!(t.validate().unwrap_err().key, "train.log_every");
    let mut s = c.scorecl.clone();
    s.stat_sigmas = vec![0.1, -1.0];
    assert_eq!(s.validate().unwrap_err().key, "scorecl.stat_sigmas[1]");
    let mut d = c.data.clone();
    d.size = 7;
    assert_eq!(d.validate().unwrap_err().key, "data.size");
    // What spans sections is the whole configuration's.
    let mut w = c.clone();
    w.schedule.warmup_epochs = 5.0;
    w.train.epochs = 2;
    assert!(w.schedule.validate().is_ok());
    assert_eq!(w.validate().unwrap_err().key, "schedule.warmup_epochs");
}

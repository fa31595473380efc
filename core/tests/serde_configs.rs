//! The `serde` feature: configs deserialize with defaults for missing keys,
//! reject unknown keys (naming them), and round-trip.
#![cfg(feature = "serde")]

use scorecl_core::augment::AugConfig;
use scorecl_core::dsm::SigmaSchedule;
use scorecl_core::knn::KnnConfig;
use scorecl_core::optim::{AdamConfig, LarsConfig, WarmupCosine};
use scorecl_core::simclr::SimClrConfig;
use scorecl_core::vicreg::VicRegConfig;
use scorecl_core::weights::{ScoreWeightConfig, WeightMode};
use scorecl_core::wmse::WmseConfig;

#[test]
fn missing_keys_take_the_defaults() {
    let c: SimClrConfig = serde_json::from_str(r#"{"temperature": 0.5}"#).unwrap();
    assert_eq!(c.temperature, 0.5);
    let w: ScoreWeightConfig = serde_json::from_str(r#"{"mode": "shuffled", "gamma": 2}"#).unwrap();
    assert_eq!(
        w,
        ScoreWeightConfig {
            mode: WeightMode::Shuffled,
            gamma: 2.0,
            ..Default::default()
        }
    );
    let v: VicRegConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(v, VicRegConfig::default());
    let k: KnnConfig = serde_json::from_str(r#"{"k": 20}"#).unwrap();
    assert_eq!((k.k, k.temperature), (20, 0.1));
}

#[test]
fn unknown_keys_and_modes_are_named() {
    let e = serde_json::from_str::<WmseConfig>(r#"{"eps": 0.1, "wsize": 64}"#).unwrap_err();
    assert!(e.to_string().contains("wsize"), "{e}");
    let e = serde_json::from_str::<ScoreWeightConfig>(r#"{"mode": "random"}"#).unwrap_err();
    assert!(e.to_string().contains("random"), "{e}");
}

#[test]
fn configs_round_trip() {
    fn rt<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(x: T) {
        let s = serde_json::to_string(&x).unwrap();
        assert_eq!(serde_json::from_str::<T>(&s).unwrap(), x, "{s}");
    }
    rt(AugConfig::imagenet(1));
    rt(SigmaSchedule::default());
    rt(LarsConfig::default());
    rt(AdamConfig::adamw());
    rt(WmseConfig {
        eps: 0.1,
        w_size: 64,
    });
    rt(WarmupCosine {
        base_lr: 0.4,
        warmup_start_lr: 3e-5,
        min_lr: 0.0,
        warmup_steps: 10,
        total_steps: 100,
    });
}

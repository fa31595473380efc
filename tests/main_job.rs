//! The main job (`cargo run --release`): its compiled-in configuration is
//! SimCLR + ScoreCL on the embedded dataset, and the job itself (shrunk to
//! a few steps here) trains, writes its run directory with plots, and
//! reports the k-NN of the encoder at initialisation and after training.

#[path = "../host/tests/common/mod.rs"]
mod common;

use scorecl::host::train::{Method, TrainConfig};
use scorecl::main_job;

#[test]
fn the_default_configuration_is_simclr_with_scorecl_on_the_embedded_dataset() {
    let cfg = TrainConfig::parse(main_job::DEFAULT_CONFIG).unwrap();
    assert_eq!(cfg.method, Method::Simclr);
    assert_eq!(cfg.scorecl.mode, "on");
    assert!(
        cfg.data.dataset.starts_with("builtin"),
        "{}",
        cfg.data.dataset
    );
    assert!(cfg.eval.knn_every > 0);
}

#[test]
fn the_main_job_trains_and_reports_both_knn_figures() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let mut cfg = TrainConfig::parse(main_job::DEFAULT_CONFIG).unwrap();
    cfg.data.dataset = "builtin:64".into();
    cfg.train.epochs = 2;
    cfg.train.batch_size = 16;
    cfg.eval.knn_k = 20;
    let tmp = tempfile::tempdir().unwrap();
    let out = main_job::fresh_dir(&tmp.path().join("default"));
    assert_eq!(out, tmp.path().join("default"));
    let r = main_job::run(gpu, cfg, &out, false).unwrap();
    for k in [&r.init, &r.trained] {
        assert_eq!(k.total, 32);
        assert!((0.0..=100.0).contains(&k.top1));
        assert_eq!(k.k, 20);
    }
    assert!(r.seconds > 0.0 && r.images_per_s > 0.0);
    for f in [
        "checkpoint/backbone.safetensors",
        "metrics.jsonl",
        "loss.png",
        "knn.png",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // A second main job goes next to the first.
    assert_eq!(
        main_job::fresh_dir(&tmp.path().join("default")),
        tmp.path().join("default-2")
    );
}

//! The main job (`cargo run --release`): its compiled-in configuration is
//! SimCLR + ScoreCL on the real CIFAR-10 subset in `data/`, one epoch of it
//! learns on every seed tried, and the job itself (on a few images here)
//! trains with and without ScoreCL, writes the run directories with plots,
//! and reports the three k-NN figures.

#[path = "../host/tests/common/mod.rs"]
mod common;

use scorecl::host::nn::checkpoint::Digest;
use scorecl::host::train::{Method, TrainConfig};

/// Points by which one epoch must beat the initial encoder: measured on
/// seeds 0-4 (2 cores, CPU device), one epoch gained +2.7, +6.2, +6.2,
/// +2.8 and +4.6 points (init 26.1 / 22.5 / 20.9 / 24.3 / 21.7 %).
const MAIN_JOB_MARGIN: f64 = 1.0;
use scorecl::main_job;

#[test]
fn the_default_configuration_is_simclr_with_scorecl_on_the_real_cifar10_subset() {
    let mut cfg = TrainConfig::parse(main_job::DEFAULT_CONFIG).unwrap();
    assert_eq!(cfg.method, Method::Simclr);
    assert_eq!(cfg.scorecl.mode.name(), "on");
    assert_eq!(cfg.data.dataset, "cifar10:data/cifar10-subset");
    assert_eq!(cfg.data.size, 32);
    assert!(cfg.eval.knn_every > 0);
    assert_eq!((cfg.eval.knn_k, cfg.eval.knn_temperature), (200, 0.1));
    // Found from any working directory.
    main_job::resolve_data(&mut cfg);
    let dir = cfg.data.dataset.strip_prefix("cifar10:").unwrap();
    assert!(
        std::path::Path::new(dir).join("test_batch.bin").exists(),
        "{dir}"
    );
}

/// The subset in the repository is the team's copy, byte for byte
/// (sizes and SHA-256 in data/cifar10-subset/README.md's provenance).
#[test]
fn the_embedded_subset_is_the_documented_cifar10_files() {
    let dir = std::path::Path::new(main_job::PROJECT_DIR).join("data/cifar10-subset");
    let want = [
        (
            "data_batch_1.bin",
            2510641,
            "4c1692bdab1019423b903889bdb9dd4137145b235385b2324213df1eb3973adb",
        ),
        (
            "data_batch_2.bin",
            2510641,
            "204b6a79bbba2f8f44a37fed60d2caf4d66eb0a408bfbf230a388081dc3af3d0",
        ),
        (
            "data_batch_3.bin",
            2510641,
            "cff9e9cc481d670ab7eaf153b43dba677108d37844aa5eb77d698e7cedaa1b58",
        ),
        (
            "data_batch_4.bin",
            2510641,
            "5d265b30f559cdf0092a0e8c11b5a4d07d807db8f55b1dff0ae4a1b19924e984",
        ),
        (
            "data_batch_5.bin",
            2510641,
            "12c7722889c37676f6fe4ae7b803ed0286067b2d7520fccb708fe555021d4ae8",
        ),
        (
            "test_batch.bin",
            3073000,
            "c5f8901bfee62eed4ca6c6e40d3e521cd391022c2ccc5597259a20bdb052dd41",
        ),
    ];
    for (name, bytes, sha) in want {
        let d = Digest::of(&std::fs::read(dir.join(name)).unwrap());
        assert_eq!((d.bytes, d.sha256.as_str()), (bytes, sha), "{name}");
    }
}

/// The main job's recipe, shortened to its first epoch (127 steps), on
/// the real subset: for each of three seeds the trained encoder's k-NN on
/// the validation images is above the initial encoder's by at least
/// `MARGIN` points (measured margins at [`MAIN_JOB_MARGIN`]).
#[test]
fn one_epoch_of_the_main_job_beats_the_initial_encoder_on_every_seed() {
    const MARGIN: f64 = MAIN_JOB_MARGIN;
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    for seed in [0, 1, 2] {
        let mut cfg = TrainConfig::parse(main_job::DEFAULT_CONFIG).unwrap();
        main_job::resolve_data(&mut cfg);
        cfg.train.epochs = 1;
        cfg.train.seed = seed;
        cfg.eval.knn_every = 1;
        let tmp = tempfile::tempdir().unwrap();
        let r = main_job::run(gpu, cfg, &tmp.path().join("default"), false, false).unwrap();
        eprintln!(
            "seed {seed}: k-NN {:.1} % at initialisation, {:.1} % after one epoch",
            r.init.top1, r.trained.top1
        );
        assert_eq!((r.init.total, r.trained.total), (1000, 1000));
        assert!(
            r.trained.top1 >= r.init.top1 + MARGIN,
            "seed {seed}: trained {:.1} % is not {MARGIN} points above the initial {:.1} %",
            r.trained.top1,
            r.init.top1
        );
    }
}

/// The whole job's machinery (both runs, the run directories, the plots)
/// on a few images.
#[test]
fn the_main_job_trains_and_reports_all_three_knn_figures() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let mut cfg = TrainConfig::parse(main_job::DEFAULT_CONFIG).unwrap();
    cfg.data.dataset = "builtin:64".into();
    cfg.data.size = 16;
    cfg.train.epochs = 2;
    cfg.train.batch_size = 16;
    cfg.scorecl.score_warmup_epochs = 1;
    cfg.eval.knn_every = 1;
    cfg.eval.knn_k = 20;
    let tmp = tempfile::tempdir().unwrap();
    let out = main_job::fresh_dir(&tmp.path().join("default"));
    assert_eq!(out, tmp.path().join("default"));
    let r = main_job::run(gpu, cfg, &out, true, false).unwrap();
    let off = r.off.as_ref().expect("the run without ScoreCL");
    for k in [&r.init, &r.trained, off] {
        assert_eq!(k.total, 32);
        assert!((0.0..=100.0).contains(&k.top1));
        assert_eq!(k.k, 20);
    }
    assert!(r.seconds > 0.0 && r.images_per_s > 0.0);
    for dir in [out.clone(), out.join("off")] {
        for f in [
            "checkpoint/backbone.safetensors",
            "metrics.jsonl",
            "loss.png",
            "knn.png",
        ] {
            assert!(dir.join(f).exists(), "{}/{f}", dir.display());
        }
    }
    let saved = |d: &std::path::Path| std::fs::read_to_string(d.join("config.toml")).unwrap();
    assert!(saved(&out.join("off")).contains("mode = \"off\""));
    assert!(saved(&out).contains("mode = \"on\""));
    // A second main job goes next to the first.
    assert_eq!(
        main_job::fresh_dir(&tmp.path().join("default")),
        tmp.path().join("default-2")
    );
}

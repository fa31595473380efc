//! End-to-end training on the tiny built-in dataset (ResNet-18 at width 8,
//! 16×16 views, batch 32), on whatever adapter is present (lavapipe in CI).
//!
//! - every method, ScoreCL on and off: ten steps, every loss finite, the
//!   mean of the last three below the mean of the first three, and the
//!   weights equal to the core's formula applied to the score statistics
//!   read back (1e-6 absolute + 1e-5 relative: the GPU and the core sum in
//!   different orders); off: all weights exactly 1;
//! - the shuffled control: the core's shuffle of the core's score weights;
//! - resume: a run stopped mid-epoch, checkpointed and resumed, ends with
//!   the same parameters and optimizer states as one that never stopped
//!   (1e-6 absolute + 1e-5 relative, same adapter; bitwise on the native
//!   CPU device);
//! - a truncated, corrupt or inconsistent checkpoint, a bad configuration
//!   key or value, and a NaN loss each give an error that names the file,
//!   key or step and term.
#[path = "../host/tests/common/mod.rs"]
mod common;
mod support;

use scorecl::core::rng::{stream_id, Philox, Purpose};
use scorecl::core::weights::{
    augment_statistic, from_statistics, Apply, ScoreWeightConfig, Statistic, Transform, WeightMode,
};
use scorecl::host::data::Split;
use scorecl::host::nn::Encoder;
use scorecl::host::ops::conv::ConvPrecision;
use scorecl::host::train::{
    run_training, Method, RunDir, RunOptions, StepReport, TrainConfig, TrainError, Trainer,
};
use scorecl::host::{Gpu, GpuOptions};
use support::{snapshot, tiny, worst_rel};

fn trainer(gpu: &Gpu, cfg: TrainConfig) -> Trainer<'_> {
    let data = cfg.data.open(Split::Train).unwrap();
    Trainer::new(gpu, cfg, data).unwrap()
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

/// The weights the core computes from the statistics read back.
fn core_weights(r: &StepReport, cfg: &ScoreWeightConfig, seed: u64) -> Vec<f32> {
    let stats = r.stats.as_ref().expect("score statistics");
    let n = stats.len() / 2;
    let shuffle = Philox::new(seed, stream_id(Purpose::Shuffle, r.step));
    let mut out = vec![0.0; cfg.apply.count(n)];
    from_statistics(&stats[..n], &stats[n..], cfg, &shuffle, &mut out).unwrap();
    out
}

fn trains(method: &str) {
    let Some(gpu) = common::gpu() else { return };
    for mode in ["on", "off"] {
        let cfg = tiny(method, mode);
        let wcfg = cfg.scorecl.weights();
        let mut t = trainer(gpu, cfg);
        let reports: Vec<StepReport> = (0..10).map(|_| t.step().unwrap()).collect();
        let losses: Vec<f32> = reports.iter().map(|r| r.loss).collect();
        assert!(
            losses.iter().all(|l| l.is_finite()),
            "{method} {mode}: {losses:?}"
        );
        assert!(
            mean(&losses[7..]) < mean(&losses[..3]),
            "{method} with ScoreCL {mode}: the loss does not fall: {losses:?}"
        );
        if mode == "off" {
            for r in &reports {
                assert!(r.weights.iter().all(|w| *w == 1.0), "uniform weights");
                assert!(r.stats.is_none() && r.dsm_loss.is_none());
            }
            continue;
        }
        let mut spread = 0.0f32;
        for r in &reports {
            assert!(r.weighted && r.dsm_loss.is_some_and(f32::is_finite));
            let want = core_weights(r, &wcfg, 0);
            common::assert_close(
                &format!("{method} step {} weights", r.step),
                &r.weights,
                &want,
                1e-6,
                1e-5,
            );
            spread = spread.max(r.weight_stats().1);
        }
        // The score network moves off its zero initialisation after one
        // DSM step, so the weights must stop being uniform.
        assert!(spread > 0.05, "{method}: weights stayed uniform");
    }
}

#[test]
fn simclr_trains_with_and_without_scorecl() {
    trains("simclr");
}

#[test]
fn simsiam_trains_with_and_without_scorecl() {
    trains("simsiam");
}

#[test]
fn wmse_trains_with_and_without_scorecl() {
    trains("wmse");
}

#[test]
fn vicreg_trains_with_and_without_scorecl() {
    trains("vicreg");
}

/// The statistics, transforms and per-view weights beyond the default,
/// three steps each: finite, non-negative statistics; as many weights as
/// the loss has terms (2n per view); the weights equal the core's
/// transform of the statistics read back (1e-6 + 1e-5 relative) and are
/// no longer uniform once the score network has left its zero output
/// (after its first step); the loss finite.
#[test]
fn every_statistic_transform_and_apply_gives_the_cores_weights() {
    let Some(gpu) = common::gpu() else { return };
    type Case = (&'static str, fn(&mut TrainConfig));
    let cases: [Case; 4] = [
        ("simclr", |c| {
            c.scorecl.statistic = Statistic::Dsm;
            c.scorecl.stat_sigmas = vec![0.1, 0.5];
            c.scorecl.transform = Transform::Rank;
        }),
        ("simclr", |c| {
            c.scorecl.statistic = Statistic::SigmaNorm;
            c.scorecl.stat_sigmas = vec![0.05, 0.2, 1.0];
            c.scorecl.transform = Transform::Softmax;
            c.scorecl.temperature = 0.5;
            c.scorecl.apply = Apply::View;
        }),
        ("simsiam", |c| {
            c.scorecl.transform = Transform::MinMax;
            c.scorecl.w_min = 0.5;
            c.scorecl.w_max = 1.5;
            c.scorecl.apply = Apply::View;
        }),
        ("vicreg", |c| {
            c.scorecl.statistic = Statistic::Dsm;
            c.scorecl.transform = Transform::MinMax;
            c.scorecl.w_min = 0.5;
            c.scorecl.w_max = 2.0;
        }),
    ];
    for (method, set) in cases {
        let mut cfg = tiny(method, "on");
        set(&mut cfg);
        cfg.validate().unwrap();
        let wcfg = cfg.scorecl.weights();
        let n = cfg.train.batch_size;
        let mut t = trainer(gpu, cfg);
        for _ in 0..3 {
            let r = t.step().unwrap();
            let what = format!("{method} {wcfg:?} step {}", r.step);
            assert!(r.loss.is_finite(), "{what}: loss {}", r.loss);
            let stats = r.stats.as_ref().expect("statistics");
            assert!(
                stats.iter().all(|s| s.is_finite() && *s >= 0.0),
                "{what}: {stats:?}"
            );
            assert_eq!(r.weights.len(), wcfg.apply.count(n), "{what}");
            common::assert_close(&what, &r.weights, &core_weights(&r, &wcfg, 0), 1e-6, 1e-5);
            if r.step > 0 {
                assert!(
                    r.weight_stats().1 > 0.01,
                    "{what}: uniform weights {:?}",
                    r.weights
                );
            }
        }
    }
}

/// The score network's quality report: at initialisation (a zero output)
/// its DSM loss is ½‖ε‖² per image, ½·D within 2 % at every level; ten
/// steps later it is lower at σ_max, where denoising is easiest.
#[test]
fn the_dsm_loss_per_level_starts_at_half_d_and_falls_at_sigma_max() {
    let Some(gpu) = common::gpu() else { return };
    let cfg = tiny("simclr", "on");
    let levels = cfg.scorecl.levels as usize;
    let data = cfg.data.open(Split::Train).unwrap();
    let half_d = 0.5 * (3 * data.h * data.w) as f64;
    let mut t = trainer(gpu, cfg);
    let before = t.dsm_per_level(&data).unwrap().expect("a score network");
    assert_eq!(before.len(), levels);
    for (k, l) in before.iter().enumerate() {
        assert!(
            (l / half_d - 1.0).abs() < 0.02,
            "level {k}: {l} vs ½·D {half_d}"
        );
    }
    for _ in 0..10 {
        t.step().unwrap();
    }
    let after = t.dsm_per_level(&data).unwrap().unwrap();
    assert!(
        after[0] < 0.9 * before[0],
        "σ_max: {} → {}",
        before[0],
        after[0]
    );
    let off = trainer(gpu, tiny("simclr", "off"));
    assert!(off.dsm_per_level(&data).unwrap().is_none());
}

/// `scorecl.score_init` starts the score network from a saved one: the
/// parameters equal the saved ones bitwise before the first step; a
/// missing file or a network of another width is refused naming the key.
#[test]
fn score_init_starts_from_a_saved_score_network() {
    let Some(gpu) = common::gpu() else { return };
    let mut a = trainer(gpu, tiny("simclr", "on"));
    for _ in 0..3 {
        a.step().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("score.safetensors");
    let net = a.score_net().unwrap();
    scorecl::host::nn::checkpoint::save(gpu, &net.store, &file).unwrap();
    let mut cfg = tiny("simclr", "on");
    cfg.scorecl.score_init = Some(dir.path().display().to_string());
    let b = trainer(gpu, cfg.clone());
    let read = |t: &scorecl::host::Tensor| gpu.download(t).unwrap()[..t.len()].to_vec();
    for (pa, pb) in net
        .store
        .params
        .iter()
        .zip(&b.score_net().unwrap().store.params)
    {
        assert_eq!(read(&pa.value), read(&pb.value), "{}", pa.name);
    }
    let mut missing = cfg.clone();
    missing.scorecl.score_init = Some(dir.path().join("nothing-here").display().to_string());
    let data = missing.data.open(Split::Train).unwrap();
    let e = Trainer::new(gpu, missing, data).err().unwrap().to_string();
    assert!(
        e.contains("scorecl.score_init") && e.contains("nothing-here"),
        "{e}"
    );
    cfg.scorecl.width = 16;
    let data = cfg.data.open(Split::Train).unwrap();
    let e = Trainer::new(gpu, cfg, data).err().unwrap().to_string();
    assert!(e.contains("scorecl.score_init"), "{e}");
}

#[test]
fn shuffled_weights_are_the_score_weights_permuted() {
    let Some(gpu) = common::gpu() else { return };
    let cfg = tiny("simclr", "shuffled");
    let wcfg = cfg.scorecl.weights();
    assert_eq!(wcfg.mode, WeightMode::Shuffled);
    let mut t = trainer(gpu, cfg);
    for _ in 0..3 {
        let r = t.step().unwrap();
        common::assert_close(
            "shuffled weights",
            &r.weights,
            &core_weights(&r, &wcfg, 0),
            1e-6,
            1e-5,
        );
        let mut unshuffled = core_weights(
            &r,
            &ScoreWeightConfig {
                mode: WeightMode::Score,
                ..wcfg
            },
            0,
        );
        let mut got = r.weights.clone();
        unshuffled.sort_by(f32::total_cmp);
        got.sort_by(f32::total_cmp);
        common::assert_close("same multiset", &got, &unshuffled, 1e-6, 1e-5);
    }
}

#[test]
fn augment_weights_come_from_the_augmentation_parameters() {
    let Some(gpu) = common::gpu() else { return };
    let cfg = tiny("simclr", "augment");
    let wcfg = cfg.scorecl.weights();
    assert_eq!(wcfg.mode, WeightMode::Augment);
    let coef = cfg.scorecl.augment_strength();
    let mut t = trainer(gpu, cfg);
    assert!(
        t.score_net().is_none(),
        "the control needs no score network"
    );
    let (h, w) = (t.data.h as u32, t.data.w as u32);
    let mut spread = 0.0f32;
    for _ in 0..3 {
        let params = t.view_params().unwrap();
        let r = t.step().unwrap();
        assert!(r.weighted && r.dsm_loss.is_none());
        let want: Vec<f32> = params
            .iter()
            .map(|p| augment_statistic(p, h, w, &coef))
            .collect();
        assert_eq!(r.stats.as_deref(), Some(&want[..]), "strengths A(v)");
        common::assert_close(
            "augment weights",
            &r.weights,
            &core_weights(&r, &wcfg, 0),
            1e-6,
            1e-5,
        );
        spread = spread.max(r.weight_stats().1);
    }
    assert!(spread > 0.05, "the weights stayed uniform");
}

/// Every parameter, state and optimizer tensor of a trainer.
fn resumes(method: &str, mode: &str) {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = tiny(method, mode);
    cfg.train.epochs = 3; // 6 steps of 2 per epoch
    let mut straight = trainer(gpu, cfg.clone());
    let mut losses = Vec::new();
    while !straight.finished() {
        losses.push(straight.step().unwrap().loss);
    }
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    {
        let mut first = trainer(gpu, cfg.clone());
        let opts = RunOptions {
            max_steps: Some(3),
            progress: false,
        };
        let s = run_training(&mut first, &run, &opts).unwrap();
        assert_eq!((s.steps, s.finished), (3, false));
    }
    let saved = run.checkpoint_config().unwrap();
    assert_eq!(
        saved, cfg,
        "the checkpoint keeps the resolved configuration"
    );
    let data = saved.data.open(Split::Train).unwrap();
    let mut resumed = run.resume(gpu, saved, data).unwrap();
    assert_eq!(resumed.state.step, 3);
    assert_eq!(resumed.state.step_in_epoch, 1, "stopped mid-epoch");
    let mut later = Vec::new();
    while !resumed.finished() {
        later.push(resumed.step().unwrap().loss);
    }
    // Every kernel sums in a fixed order on one device (no float atomics):
    // a resumed run is the uninterrupted one bit for bit, on every device.
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&later),
        bits(&losses[3..]),
        "{method}: losses after the resume: {later:?} vs {:?}",
        &losses[3..]
    );
    let (a, b) = (snapshot(&straight), snapshot(&resumed));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(
            bits(y),
            bits(x),
            "{method}: {name} not bitwise equal after the resume"
        );
    }
}

#[test]
fn resume_matches_an_uninterrupted_run_lars_with_scorecl() {
    resumes("simclr", "on");
}

#[test]
fn resume_matches_an_uninterrupted_run_sgd_and_adam() {
    resumes("simsiam", "off");
    resumes("wmse", "shuffled");
}

/// `model.arch = "resnet50"` trains ResNet-50 (bottleneck blocks, 32·width
/// features) end to end: finite losses with ScoreCL on, a checkpoint whose
/// backbone holds the bottleneck blocks' torchvision names (`layer4.2.conv3`),
/// loaded back as the same architecture by `load_backbone` (what `eval`
/// and `probe` use) with every tensor equal.
#[test]
fn model_arch_resnet50_trains_checkpoints_and_loads_back() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = tiny("simclr", "on");
    cfg.model.arch = scorecl::host::train::Arch::Resnet50;
    cfg.train.epochs = 1; // 2 steps
    let mut t = trainer(gpu, cfg);
    assert_eq!(t.encoder.feature_dim(), 256);
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let opts = RunOptions {
        max_steps: None,
        progress: false,
    };
    let s = run_training(&mut t, &run, &opts).unwrap();
    assert!(s.finished && s.steps == 2);
    let (loaded, cfg) = RunDir::load_backbone(gpu, dir.path()).unwrap();
    assert_eq!(cfg.model.arch, scorecl::host::train::Arch::Resnet50);
    assert_eq!(loaded.feature_dim(), 256);
    let names = |e: &dyn Encoder| -> Vec<String> {
        e.store().params.iter().map(|p| p.name.clone()).collect()
    };
    let loaded_names = names(loaded.as_ref());
    assert!(loaded_names.iter().any(|n| n == "layer4.2.conv3.weight"));
    assert_eq!(loaded_names, names(t.encoder.as_ref()));
    for (a, b) in loaded.store().params.iter().zip(&t.encoder.store().params) {
        let (x, y) = (
            gpu.download(&a.value).unwrap(),
            gpu.download(&b.value).unwrap(),
        );
        assert!(x == y, "{} differs after loading", a.name);
    }
}

/// A run directory with a checkpoint at step 2.
fn checkpointed(gpu: &Gpu) -> (tempfile::TempDir, RunDir, TrainConfig) {
    let cfg = tiny("vicreg", "on");
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut t = trainer(gpu, cfg.clone());
    let opts = RunOptions {
        max_steps: Some(2),
        progress: false,
    };
    run_training(&mut t, &run, &opts).unwrap();
    (dir, run, cfg)
}

fn resume_err(gpu: &Gpu, run: &RunDir, cfg: &TrainConfig) -> String {
    let data = cfg.data.open(Split::Train).unwrap();
    match run.resume(gpu, cfg.clone(), data) {
        Ok(_) => panic!("resuming a damaged checkpoint succeeded"),
        Err(e) => e.to_string(),
    }
}

/// Rewrites the hash of `file` in `state.json` to match what is on disk
/// (a damaged file that state.json vouches for, as a buggy writer would
/// leave it), so the checks behind the hash are reached.
fn rehash(ck: &std::path::Path, file: &str) {
    let state = ck.join("state.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let d = scorecl::host::nn::checkpoint::Digest::of(&std::fs::read(ck.join(file)).unwrap());
    for f in v["files"].as_array_mut().unwrap() {
        if f["name"] == file {
            f["bytes"] = d.bytes.into();
            f["sha256"] = d.sha256.clone().into();
        }
    }
    std::fs::write(&state, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn damaged_checkpoints_are_named() {
    let Some(gpu) = common::gpu() else { return };
    let (_dir, run, cfg) = checkpointed(gpu);
    let ck = run.checkpoint_dir();
    let backbone = ck.join("backbone.safetensors");
    let good = std::fs::read(&backbone).unwrap();
    let state = ck.join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();

    // Truncated: its length is not the recorded one.
    std::fs::write(&backbone, &good[..good.len() / 2]).unwrap();
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("backbone.safetensors") && e.contains("state.json records"),
        "{e}"
    );
    // ... and behind the hash, not a safetensors file.
    rehash(&ck, "backbone.safetensors");
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("backbone.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );
    std::fs::write(&state, &text).unwrap();

    // Two values of layer4.1.conv2.weight overwritten with NaN (same
    // length): the hash no longer matches.
    let st = safetensors::SafeTensors::deserialize(&good).unwrap();
    let w = st.tensor("layer4.1.conv2.weight").unwrap();
    let at = w.data().as_ptr() as usize - good.as_ptr() as usize + w.data().len() / 8 * 4;
    let mut nan = good.clone();
    for k in 0..2 {
        nan[at + 4 * k..at + 4 * k + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&backbone, &nan).unwrap();
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("backbone.safetensors") && e.contains("SHA-256"),
        "{e}"
    );
    // ... and behind the hash, the non-finite values are refused by name,
    // for resuming and for evaluation alike.
    rehash(&ck, "backbone.safetensors");
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("layer4.1.conv2.weight") && e.contains("2 non-finite"),
        "{e}"
    );
    let e = RunDir::load_backbone(gpu, run.path.as_path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("layer4.1.conv2.weight") && e.contains("non-finite"),
        "{e}"
    );
    std::fs::write(&backbone, &good).unwrap();
    std::fs::write(&state, &text).unwrap();

    // Corrupt header.
    let mut bad = good.clone();
    bad[8..24].copy_from_slice(&[0xff; 16]);
    std::fs::write(&backbone, &bad).unwrap();
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("backbone.safetensors") && e.contains("SHA-256"),
        "{e}"
    );
    std::fs::write(&backbone, &good).unwrap();

    // An altered config.toml is caught by its hash too.
    let conf = ck.join("config.toml");
    let conf_good = std::fs::read(&conf).unwrap();
    let mut conf_bad = conf_good.clone();
    conf_bad.extend_from_slice(b"\n");
    std::fs::write(&conf, &conf_bad).unwrap();
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("config.toml") && e.contains("state.json records"),
        "{e}"
    );
    std::fs::write(&conf, &conf_good).unwrap();

    // Files from different steps.
    let opt = ck.join("optimizer.safetensors");
    let opt_good = std::fs::read(&opt).unwrap();
    std::fs::write(&state, text.replace("\"step\": 2", "\"step\": 7")).unwrap();
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("written at step 2") && e.contains("step 7"),
        "{e}"
    );
    std::fs::write(&state, &text).unwrap();

    // A truncated optimizer state.
    std::fs::write(&opt, &opt_good[..100]).unwrap();
    let e = resume_err(gpu, &run, &cfg);
    assert!(e.contains("optimizer.safetensors"), "{e}");
    std::fs::write(&opt, &opt_good).unwrap();

    // A corrupt state.json.
    std::fs::write(&state, "{ not json").unwrap();
    let e = resume_err(gpu, &run, &cfg);
    assert!(
        e.contains("state.json") && e.contains("not a scorecl checkpoint state"),
        "{e}"
    );
    std::fs::write(&state, &text).unwrap();

    // The wrong method for the files.
    let e = resume_err(gpu, &run, &tiny("simclr", "on"));
    assert!(e.contains("a vicreg checkpoint"), "{e}");

    // No checkpoint at all.
    std::fs::remove_dir_all(&ck).unwrap();
    let _ = std::fs::remove_dir_all(run.prev_dir());
    let e = resume_err(gpu, &run, &cfg);
    assert!(e.contains("nothing to resume"), "{e}");
}

/// Each checkpoint keeps the one before it in `checkpoint.prev/`; a swap
/// interrupted between its renames (only `checkpoint.prev/` on disk)
/// resumes from it.
#[test]
fn the_previous_checkpoint_is_kept_and_resumed_when_the_swap_was_interrupted() {
    let Some(gpu) = common::gpu() else { return };
    let (_dir, run, cfg) = checkpointed(gpu);
    let data = cfg.data.open(Split::Train).unwrap();
    let mut t = run.resume(gpu, cfg.clone(), data.clone()).unwrap();
    let opts = RunOptions {
        max_steps: Some(3),
        progress: false,
    };
    run_training(&mut t, &run, &opts).unwrap();
    let read_step = |dir: std::path::PathBuf| {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap())
                .unwrap();
        v["state"]["step"].as_u64().unwrap()
    };
    assert_eq!(read_step(run.checkpoint_dir()), 3);
    assert_eq!(read_step(run.prev_dir()), 2);
    std::fs::remove_dir_all(run.checkpoint_dir()).unwrap();
    assert_eq!(run.resume_dir().unwrap(), run.prev_dir());
    let t = run.resume(gpu, cfg, data).unwrap();
    assert_eq!(t.state.step, 2);
}

/// `train.precision = "f16"`: on a device with shader-f16 the convolutions
/// read f16 columns and weights, and training follows the f32 run closely
/// (same initialisation, data and noise; only the rounding of the products'
/// operands differs) and still learns; without shader-f16 (the GL pass) it
/// falls back to f32 and is bitwise the f32 run.
#[test]
fn f16_storage_trains_and_its_first_step_is_within_1_percent_of_f32() {
    let Some(gpu) = common::gpu() else { return };
    let run = |precision: &str| {
        let mut cfg = tiny("simclr", "on");
        cfg.train.precision = scorecl_host::ops::conv::ConvPrecision::parse(precision).unwrap();
        let mut t = trainer(gpu, cfg);
        let losses: Vec<f32> = (0..10).map(|_| t.step().unwrap().loss).collect();
        (t.conv_precision(), losses)
    };
    let (p32, l32) = run("f32");
    let (p16, l16) = run("f16");
    assert_eq!(p32, ConvPrecision::F32);
    assert_eq!(p16 == ConvPrecision::F16, gpu.caps.f16, "{}", gpu.info.name);
    if p16 == ConvPrecision::F32 {
        assert_eq!(l16, l32, "the f32 fallback is the f32 run");
        return;
    }
    assert!(l16.iter().all(|l| l.is_finite()), "{l16:?}");
    assert!(
        mean(&l16[7..]) < mean(&l16[..3]),
        "the loss does not fall with f16 storage: {l16:?}"
    );
    assert_ne!(l16, l32, "f16 storage changed nothing");
    let rel = (l16[0] - l32[0]).abs() / l32[0].abs();
    assert!(
        rel < 1e-2,
        "first step: f16 {} vs f32 {} ({rel:e})",
        l16[0],
        l32[0]
    );
}

/// Every buffer of a training step comes from the pool: once a step of
/// each kind has run (the warm-up's and the weighted one, which reads back
/// the score statistics), further steps create none, with f32 and f16
/// storage. A device of its own, so no other test allocates on it
/// meanwhile.
#[test]
fn training_steps_allocate_nothing_after_the_first() {
    if common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new(&GpuOptions {
        quiet: true,
        ..GpuOptions::from_env()
    })
    .unwrap();
    for precision in ["f32", "f16"] {
        let mut cfg = tiny("simclr", "on");
        cfg.train.precision = scorecl_host::ops::conv::ConvPrecision::parse(precision).unwrap();
        cfg.scorecl.score_warmup_epochs = 1;
        let mut t = trainer(&gpu, cfg);
        assert!(!t.step().unwrap().weighted, "a warm-up step");
        let mut steps = 1;
        while !t.step().unwrap().weighted {
            steps += 1;
            assert!(steps < 10, "the warm-up never ended");
        }
        let created = gpu.buffers_created();
        let bytes = gpu.memory().allocated_bytes;
        for _ in 0..4 {
            assert!(t.step().unwrap().weighted);
        }
        assert_eq!(
            (gpu.buffers_created(), gpu.memory().allocated_bytes),
            (created, bytes),
            "{precision}: steps after the first of their kind created buffers"
        );
    }
}

#[test]
fn bad_configuration_keys_and_values_are_named() {
    let e = TrainConfig::parse("[optimizer]\nlrr = 0.1\n").unwrap_err();
    assert!(e.to_string().contains("lrr"), "{e}");
    let e = TrainConfig::parse("[optimizer]\nlr = -1.0\n").unwrap_err();
    assert_eq!(e.key, "optimizer.lr");
    assert!(e.message.contains("allowed"), "{e}");
    let e = TrainConfig::parse("method = \"byol\"\n").unwrap_err();
    assert!(e.to_string().contains("byol"), "{e}");
    let e = TrainConfig::parse("[scorecl]\nmode = \"maybe\"\n").unwrap_err();
    assert_eq!(e.key, "scorecl.mode");
    let e = TrainConfig::parse("method = \"wmse\"\n[wmse]\nw_size = 100\n").unwrap_err();
    assert_eq!(e.key, "wmse.w_size");
    let e = TrainConfig::parse("[train]\nprecision = \"bf16\"\n").unwrap_err();
    assert_eq!(e.key, "train.precision");
    let e = TrainConfig::parse("[augment]\ncrop_scale = [0.9, 0.1]\n").unwrap_err();
    assert!(e.to_string().contains("crop_scale"), "{e}");
    let e = TrainConfig::parse("[scorecl]\ntransform = \"median\"\n").unwrap_err();
    assert!(
        e.to_string().contains("transform") && e.to_string().contains("rank"),
        "{e}"
    );
    let e =
        TrainConfig::parse("method = \"wmse\"\n[wmse]\nw_size = 32\n[scorecl]\napply = \"view\"\n")
            .unwrap_err();
    assert_eq!(e.key, "scorecl.apply");
    let e = TrainConfig::parse("[scorecl]\nstat_sigmas = [0.1, -1.0]\n").unwrap_err();
    assert_eq!(e.key, "scorecl.stat_sigmas[1]");
    let e = TrainConfig::parse("[scorecl]\ntransform = \"minmax\"\nw_max = inf\n").unwrap_err();
    assert!(e.to_string().contains("w_max"), "{e}");
}

/// `--set KEY=VALUE` overrides: nested keys, TOML values and bare strings
/// land in the typed configuration; a bad value or key is refused naming
/// the key.
#[test]
fn overrides_set_nested_keys_and_bad_ones_are_named() {
    let base = TrainConfig::parse("[train]\nepochs = 3\n[schedule]\nwarmup_epochs = 1\n").unwrap();
    let c = base
        .with_overrides(&[
            "scorecl.transform=rank".into(),
            "scorecl.stat_sigmas=[0.5, 0.1]".into(),
            "train.epochs = 12".into(),
            "scorecl.apply=\"view\"".into(),
        ])
        .unwrap();
    assert_eq!(c.scorecl.transform, Transform::Rank);
    assert_eq!(c.scorecl.stat_sigmas, [0.5, 0.1]);
    assert_eq!(c.scorecl.apply, Apply::View);
    assert_eq!(c.train.epochs, 12);
    assert_eq!(c.with_overrides(&[]).unwrap(), c);
    let e = base
        .with_overrides(&["train.epochs=-1".into()])
        .unwrap_err();
    assert!(e.to_string().contains("train.epochs"), "{e}");
    let e = base
        .with_overrides(&["scorecl.temperature=0".into()])
        .unwrap_err();
    assert!(e.to_string().contains("temperature"), "{e}");
    let e = base.with_overrides(&["scorecl.nope=1".into()]).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = base.with_overrides(&["epochs".into()]).unwrap_err();
    assert_eq!(e.key, "--set");
}

/// Sizes are checked before anything is allocated: a model, batch or view
/// size the device (or the host, for generated data) cannot hold is an
/// error naming the key, the bytes and the limit, never an allocation
/// abort.
#[test]
fn sizes_beyond_the_device_are_refused_naming_the_key_before_allocation() {
    let Some(gpu) = common::gpu() else { return };
    let build = |edit: &dyn Fn(&mut TrainConfig)| {
        let mut cfg = tiny("simclr", "on");
        edit(&mut cfg);
        let data = cfg.data.open(Split::Train)?;
        Trainer::new(gpu, cfg, data).map(|_| ())
    };
    let e = build(&|c| c.model.width = 200_000).unwrap_err().to_string();
    assert!(
        e.contains("model.width") && e.contains("largest encoder weight") && e.contains("bytes"),
        "{e}"
    );
    let e = build(&|c| {
        c.model.width = 512;
        c.data.size = 256;
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("data.size") && e.contains("bytes"), "{e}");
    let e = build(&|c| c.data.size = 10_000_000)
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.size") && e.contains("host memory"), "{e}");
    let e = build(&|c| c.scorecl.width = 300_000)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scorecl.width") && e.contains("score network's largest weight"),
        "{e}"
    );
    // On a wgpu adapter: a model that fits the host but not the device's
    // binding limit (lavapipe: 128 MiB; width 256 makes a 151 MB weight).
    if let Some(g) = common::wgpu_gpu() {
        let limit = g.caps.limits.max_storage_buffer_binding_size;
        if limit < 151_000_000 {
            let mut cfg = tiny("simclr", "on");
            cfg.model.width = 256;
            let data = cfg.data.open(Split::Train).unwrap();
            let e = Trainer::new(g, cfg, data).err().unwrap().to_string();
            assert!(
                e.contains("model.width") && e.contains("max_storage_buffer_binding_size"),
                "{e}"
            );
        }
    }
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_checkpoint() {
    let Some(gpu) = common::gpu() else { return };
    let cfg = tiny("simclr", "on");
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut t = trainer(gpu, cfg);
    let opts = RunOptions {
        max_steps: Some(2),
        progress: false,
    };
    run_training(&mut t, &run, &opts).unwrap();
    let state = std::fs::read_to_string(run.checkpoint_dir().join("state.json")).unwrap();
    // Poison the projector's output bias (after its last ReLU, which
    // would map NaN to 0): every projection becomes NaN.
    let bias = t.heads.find("projector.3.bias").unwrap();
    let nan = vec![f32::NAN; bias.value.len()];
    gpu.write(&bias.value, bytemuck::cast_slice(&nan)).unwrap();
    let opts = RunOptions {
        max_steps: None,
        progress: false,
    };
    match run_training(&mut t, &run, &opts) {
        Err(TrainError::NonFinite { step, term, .. }) => {
            assert_eq!(step, 2);
            assert_eq!(term, "simclr loss");
        }
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
    let after = std::fs::read_to_string(run.checkpoint_dir().join("state.json")).unwrap();
    assert_eq!(after, state, "the last good checkpoint is kept");
}

/// The case that destroyed a run before: NaN in two values of
/// `layer4.1.conv2.weight`. The ReLUs now keep NaN as PyTorch does, so the
/// loss itself is NaN and the run stops; and a NaN that only the update
/// sees (here, in an optimizer moment) is caught by the optimizer's guard,
/// which names the tensor. Either way the last checkpoint is untouched.
#[test]
fn non_finite_weights_or_moments_stop_the_run_naming_what_and_keep_the_checkpoint() {
    let Some(gpu) = common::gpu() else { return };
    let cfg = tiny("simclr", "on");
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut t = trainer(gpu, cfg.clone());
    let two = RunOptions {
        max_steps: Some(2),
        progress: false,
    };
    run_training(&mut t, &run, &two).unwrap();
    let state = std::fs::read_to_string(run.checkpoint_dir().join("state.json")).unwrap();
    let rest = RunOptions {
        max_steps: None,
        progress: false,
    };
    // A damaged weight deep in the encoder.
    let w = t.encoder.store().find("layer4.1.conv2.weight").unwrap();
    let mut v = gpu.download(&w.value).unwrap()[..w.value.len()].to_vec();
    v[5] = f32::NAN;
    v[w.value.len() / 2] = f32::NAN;
    gpu.write(&w.value, bytemuck::cast_slice(&v)).unwrap();
    match run_training(&mut t, &run, &rest) {
        Err(TrainError::NonFinite { step, term, .. }) => {
            assert_eq!((step, term.as_str()), (2, "simclr loss"));
        }
        other => panic!("expected a non-finite loss, got {other:?}"),
    }
    // A damaged optimizer moment: the loss of the step is finite, the
    // update is not.
    let mut t = run
        .resume(gpu, cfg.clone(), cfg.data.open(Split::Train).unwrap())
        .unwrap();
    let (name, m) = t
        .optimizer_tensors()
        .into_iter()
        .rev()
        .find(|(n, _)| n.starts_with("backbone.layer2.0.conv1.weight."))
        .unwrap();
    let poison = vec![f32::NAN; m.len()];
    gpu.write(m, bytemuck::cast_slice(&poison)).unwrap();
    match run_training(&mut t, &run, &rest) {
        Err(e @ TrainError::NonFiniteTensor { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("step 2") && msg.contains("`backbone.layer2.0.conv1.weight`"),
                "{msg} ({name})"
            );
        }
        other => panic!("expected the optimizer guard to stop the run, got {other:?}"),
    }
    let after = std::fs::read_to_string(run.checkpoint_dir().join("state.json")).unwrap();
    assert_eq!(after, state, "the last good checkpoint is kept");
}

#[test]
fn every_preset_loads_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let cfg = TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_str().unwrap();
        if stem == "default" {
            // The main job's configuration (tests/main_job.rs).
            seen += 1;
            continue;
        }
        if stem.starts_with("study-") {
            // A study's base for `scorecl compare --methods …`: valid for
            // every method.
            for m in [
                Method::Simclr,
                Method::Simsiam,
                Method::Wmse,
                Method::Vicreg,
            ] {
                let mut c = cfg.clone();
                c.method = m;
                c.validate()
                    .unwrap_or_else(|e| panic!("{stem} with {}: {e}", m.name()));
            }
            seen += 1;
            continue;
        }
        assert!(
            stem.ends_with(cfg.method.name()),
            "{stem} holds method {}",
            cfg.method.name()
        );
        if stem.starts_with("cifar") || stem.starts_with("imagenet100") {
            assert_eq!(cfg.model.width, 64, "{stem}: ResNet-18");
            assert_eq!(cfg.scorecl.mode.name(), "on", "{stem}");
        }
        seen += 1;
    }
    assert_eq!(
        seen, 14,
        "4 methods × (CIFAR, ImageNet-100, tiny), default and the study's base"
    );
}

/// `scripts/test.sh` runs this file again with `WGPU_BACKEND=gl`: the
/// tests must then really run on GL (the fallback kernels), not on
/// whatever adapter comes first.
#[test]
fn runs_on_the_backend_wgpu_backend_names() {
    let Some(gpu) = common::gpu() else { return };
    let wanted = std::env::var("WGPU_BACKEND").unwrap_or_default();
    let wanted = wanted.trim().to_lowercase();
    if !wanted.is_empty() && !wanted.contains(',') {
        assert_eq!(gpu.info.backend.to_str(), wanted, "{}", gpu.describe());
    }
    if gpu.info.backend == scorecl::host::wgpu::Backend::Gl {
        assert!(!gpu.caps.subgroups && !gpu.caps.f16, "GL offers neither");
    }
}

/// Ten steps of the same configuration and seed (the tiny SimCLR and
/// SimSiam with ScoreCL, at a hundredth of their learning rates) on a wgpu
/// adapter (lavapipe in CI; llvmpipe in the GL pass) and on the native CPU
/// device: the kernels sum in different orders, so the runs agree to a
/// tolerance, not bitwise: every loss within 1e-4 + 1e-3 relative, every
/// parameter and running statistic within 5e-2 of its tensor's largest
/// value (seen on lavapipe: 1.6e-2, a BatchNorm bias that starts at 0; the
/// adapter's own fallback path differs from its subgroup path by 1.2e-2).
/// A checkpoint written on either device resumes on the other and ends as
/// the uninterrupted run there does, to the same tolerance.
#[test]
fn the_wgpu_adapter_and_the_cpu_device_train_alike_and_share_checkpoints() {
    let Some(wg) = common::wgpu_gpu() else { return };
    let cpu = common::cpu();
    for method in ["simclr", "simsiam"] {
        let mut cfg = tiny(method, "on");
        // At the tiny presets' learning rates ten steps are chaotic: the
        // adapter's own two reduction orders (subgroups or not) part by
        // 1 % in the loss by step 4. A hundredth of it keeps the runs
        // comparable.
        cfg.optimizer.lr *= 0.01;
        let run_all = |gpu: &Gpu| {
            let mut t = trainer(gpu, cfg.clone());
            let losses: Vec<f32> = (0..10).map(|_| t.step().unwrap().loss).collect();
            (losses, snapshot(&t))
        };
        let (lw, sw) = run_all(wg);
        let (lc, sc) = run_all(cpu);
        for (i, (a, b)) in lw.iter().zip(&lc).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 + 1e-3 * b.abs(),
                "{method} step {i}: loss {a} on {} vs {b} on the CPU device",
                wg.info.name
            );
        }
        let (e, name) = worst_rel(&sw, &sc, 1e-6);
        assert!(e <= 5e-2, "{method}: {name} differs by {e:e} (relative)");
        eprintln!("{method}: largest parameter difference {e:e} ({name})");
        // Checkpoint after 3 steps on one device, resume on the other.
        for (first, second, want) in [(wg, cpu, &sc), (cpu, wg, &sw)] {
            let dir = tempfile::tempdir().unwrap();
            let run = RunDir::new(dir.path());
            let mut t = trainer(first, cfg.clone());
            let opts = RunOptions {
                max_steps: Some(3),
                progress: false,
            };
            run_training(&mut t, &run, &opts).unwrap();
            let saved = run.checkpoint_config().unwrap();
            let data = saved.data.open(Split::Train).unwrap();
            let mut resumed = run.resume(second, saved, data).unwrap();
            assert_eq!(resumed.state.step, 3);
            while resumed.state.step < 10 {
                resumed.step().unwrap();
            }
            let (e, name) = worst_rel(&snapshot(&resumed), want, 1e-6);
            assert!(
                e <= 5e-2,
                "{method}: resumed on {} from {}: {name} differs by {e:e}",
                second.info.name,
                first.info.name
            );
        }
    }
}

//! Data-parallel training, two ranks as threads of this process
//! (`ThreadComm`) on the device the environment chooses (the native CPU
//! device here), against one rank at the same global batch:
//!
//! - every method, ScoreCL on and off, with synchronised batch norm: after
//!   five steps the losses, pair weights and DSM losses within 1e-4 + 1e-3
//!   relative of the single rank's, every parameter and running statistic
//!   within [`TOL`] of its tensor's largest value (the sums over the ranks
//!   and the batch statistics' combination add in other orders than one
//!   device does: the first step's gradients agree to about 1e-6 of their
//!   scale), and the two ranks hold every tensor bit for bit alike. As in
//!   the cross-device test of `tests/train.rs`, at a hundredth of the tiny
//!   presets' learning rates, where ten steps are not chaotic;
//! - without synchronised batch norm: each rank normalises its own half,
//!   so the losses differ from one rank's beyond that tolerance, while the
//!   parameters stay equal across the ranks bit for bit and each rank's
//!   running statistics are its own;
//! - a checkpoint written by a two-rank run resumes on one rank and ends
//!   where an uninterrupted two-rank run ends (the same tolerance);
//! - a global batch that does not divide over the ranks, and ranks given
//!   different configurations, are refused naming the key or the rank;
//! - `scorecl train --devices 2` (two ranks as threads of the binary)
//!   trains as one device does: logged losses within 1e-4 + 1e-3
//!   relative, checkpointed parameters within [`TOL`] of their scale.
#[path = "../host/tests/common/mod.rs"]
mod common;
mod support;

use std::rc::Rc;

use scorecl::host::data::Split;
use scorecl::host::dist::{Link, ThreadComm};
use scorecl::host::train::{run_training, RunDir, RunOptions, StepReport, TrainConfig, Trainer};
use scorecl::host::Gpu;
use support::{snapshot, tiny, worst_rel};

/// Largest difference of a parameter or running statistic after five
/// steps, two ranks against one, relative to its tensor's largest value or
/// [`FLOOR`], whichever is larger (measured: 3e-6 to 9e-4, the largest a
/// bias before a batch norm, whose gradient is zero in exact arithmetic).
const TOL: f32 = 5e-3;

/// Values below this are rounding noise around an exact zero: the SimSiam
/// predictor's batch norm follows a layer without bias, and its running
/// mean is ~1e-8 on one rank and on two.
const FLOOR: f32 = 1e-3;

/// A tiny configuration at a hundredth of its learning rate.
fn calm(method: &str, mode: &str) -> TrainConfig {
    let mut cfg = tiny(method, mode);
    cfg.optimizer.lr *= 0.01;
    cfg
}

/// A rank's step reports and its tensors at the end.
type RankRun = (Vec<StepReport>, Vec<(String, Vec<f32>)>);

/// Runs `steps` steps of `cfg` on `size` ranks (threads), each rank's
/// reports and final snapshot in rank order.
fn run_ranks(gpu: &Gpu, cfg: &TrainConfig, size: usize, steps: usize) -> Vec<RankRun> {
    let comms = ThreadComm::group(size);
    std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|c| {
                let cfg = cfg.clone();
                s.spawn(move || {
                    let data = cfg.data.open(Split::Train).unwrap();
                    let mut t = Trainer::with_comm(gpu, cfg, data, Rc::new(c) as Link).unwrap();
                    let reports: Vec<StepReport> = (0..steps).map(|_| t.step().unwrap()).collect();
                    (reports, snapshot(&t))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 + 1e-3 * b.abs()
}

fn bits(s: &[(String, Vec<f32>)]) -> Vec<Vec<u32>> {
    s.iter()
        .map(|(_, v)| v.iter().map(|f| f.to_bits()).collect())
        .collect()
}

fn two_ranks_equal_one(method: &str) {
    let Some(gpu) = common::gpu() else { return };
    for mode in ["off", "on"] {
        let cfg = calm(method, mode);
        let one = run_ranks(gpu, &cfg, 1, 5).pop().unwrap();
        let two = run_ranks(gpu, &cfg, 2, 5);
        let tag = format!("{method} ScoreCL {mode}");
        assert_eq!(
            bits(&two[0].1),
            bits(&two[1].1),
            "{tag}: the ranks' tensors differ"
        );
        assert_eq!(
            one.0.iter().any(|r| r.weighted),
            mode == "on",
            "{tag}: the score weights apply from the first step"
        );
        for (r, (reports, snap)) in two.iter().enumerate() {
            for (got, want) in reports.iter().zip(&one.0) {
                assert!(
                    close(got.loss, want.loss),
                    "{tag} rank {r} step {}: loss {} vs {}",
                    got.step,
                    got.loss,
                    want.loss
                );
                assert_eq!(got.weights.len(), want.weights.len());
                for (a, b) in got.weights.iter().zip(&want.weights) {
                    assert!(
                        close(*a, *b),
                        "{tag} rank {r} step {}: weight {a} vs {b}",
                        got.step
                    );
                }
                if let (Some(a), Some(b)) = (got.dsm_loss, want.dsm_loss) {
                    assert!(
                        close(a, b),
                        "{tag} rank {r} step {}: DSM loss {a} vs {b}",
                        got.step
                    );
                }
            }
            let (e, at) = worst_rel(snap, &one.1, FLOOR);
            eprintln!("{tag} rank {r}: largest parameter difference {e:e} ({at})");
            assert!(
                e <= TOL,
                "{tag} rank {r}: {at} differs by {e:e} of its scale"
            );
        }
    }
}

#[test]
fn two_ranks_equal_one_rank_at_the_same_global_batch_simclr() {
    two_ranks_equal_one("simclr");
}

#[test]
fn two_ranks_equal_one_rank_at_the_same_global_batch_simsiam() {
    two_ranks_equal_one("simsiam");
}

#[test]
fn two_ranks_equal_one_rank_at_the_same_global_batch_wmse() {
    two_ranks_equal_one("wmse");
}

#[test]
fn two_ranks_equal_one_rank_at_the_same_global_batch_vicreg() {
    two_ranks_equal_one("vicreg");
}

#[test]
fn without_sync_batchnorm_each_rank_normalises_its_half_and_keeps_its_own_running_statistics() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = calm("simclr", "on");
    cfg.train.sync_batchnorm = false;
    let one = run_ranks(gpu, &cfg, 1, 3).pop().unwrap();
    let two = run_ranks(gpu, &cfg, 2, 3);
    // The step-0 loss already differs: batch statistics over 16, not 32.
    let (a, b) = (two[0].0[0].loss, one.0[0].loss);
    assert!(!close(a, b), "loss {a} should differ from one rank's {b}");
    let params = |s: &[(String, Vec<f32>)]| -> Vec<Vec<u32>> {
        s.iter()
            .filter(|(n, _)| !n.contains("running_") && !n.contains("num_batches"))
            .map(|(_, v)| v.iter().map(|f| f.to_bits()).collect())
            .collect()
    };
    assert_eq!(
        params(&two[0].1),
        params(&two[1].1),
        "parameters and optimizer states differ across ranks"
    );
    let running = |s: &[(String, Vec<f32>)]| -> Vec<f32> {
        s.iter()
            .filter(|(n, _)| n.contains("running_mean"))
            .flat_map(|(_, v)| v.clone())
            .collect()
    };
    assert_ne!(
        running(&two[0].1),
        running(&two[1].1),
        "each rank's running statistics are its own"
    );
}

#[test]
fn a_two_rank_checkpoint_resumes_on_one_rank_where_two_ranks_would_be() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = calm("simclr", "on");
    cfg.train.epochs = 2; // 4 steps of 2 per epoch
    let straight = run_ranks(gpu, &cfg, 2, 4);
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let comms = ThreadComm::group(2);
    std::thread::scope(|s| {
        for c in comms {
            let (cfg, run) = (cfg.clone(), &run);
            s.spawn(move || {
                let data = cfg.data.open(Split::Train).unwrap();
                let mut t = Trainer::with_comm(gpu, cfg, data, Rc::new(c) as Link).unwrap();
                let opts = RunOptions {
                    max_steps: Some(2),
                    progress: false,
                };
                run_training(&mut t, run, &opts).unwrap();
            });
        }
    });
    let saved = run.checkpoint_config().unwrap();
    let data = saved.data.open(Split::Train).unwrap();
    let mut resumed = run.resume(gpu, saved, data).unwrap();
    assert_eq!(resumed.state.step, 2);
    while !resumed.finished() {
        resumed.step().unwrap();
    }
    let (e, at) = worst_rel(&snapshot(&resumed), &straight[0].1, FLOOR);
    eprintln!("resumed on one rank: largest parameter difference {e:e} ({at})");
    assert!(
        e <= TOL,
        "resumed on one rank: {at} differs by {e:e} of its scale"
    );
}

#[test]
fn a_batch_that_does_not_divide_and_ranks_that_disagree_are_refused() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = tiny("simclr", "off");
    cfg.train.batch_size = 31;
    cfg.wmse.w_size = 31;
    let data = cfg.data.open(Split::Train).unwrap();
    let mut comms = ThreadComm::group(2);
    let c0 = comms.remove(0);
    let err = Trainer::with_comm(gpu, cfg, data, Rc::new(c0) as Link)
        .err()
        .unwrap();
    assert!(err.to_string().contains("train.batch_size"), "{err}");
    let comms = ThreadComm::group(2);
    let errs: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(r, c)| {
                s.spawn(move || {
                    let mut cfg = tiny("simclr", "off");
                    cfg.train.seed = r as u64;
                    let data = cfg.data.open(Split::Train).unwrap();
                    match Trainer::with_comm(gpu, cfg, data, Rc::new(c) as Link) {
                        Ok(_) => String::new(),
                        Err(e) => e.to_string(),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in errs {
        assert!(e.contains("rank 1") && e.contains("differs"), "{e}");
    }
}

#[test]
fn train_on_two_devices_in_one_process_equals_one_device() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::calm_config(dir.path(), 3);
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    support::assert_success(&support::train_cli(&cfg, &one, &[]), "one device");
    let out = support::train_cli(&cfg, &two, &["--devices", "2"]);
    support::assert_success(&out, "--devices 2");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rank 1 of 2 (threads)"),
        "each rank says where it runs"
    );
    let (a, b) = (support::logged_losses(&two), support::logged_losses(&one));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(close(*x, *y), "step {i}: loss {x} vs {y}");
    }
    let (e, at) = worst_rel(
        &support::checkpoint_tensors(&two),
        &support::checkpoint_tensors(&one),
        FLOOR,
    );
    eprintln!("--devices 2 against one device: largest parameter difference {e:e} ({at})");
    assert!(e <= TOL, "{at} differs by {e:e} of its scale");
}

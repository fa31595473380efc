//! Killed at any point, a run resumes to the same parameters, bit for bit:
//! `scorecl train` is stopped with SIGKILL a few steps after each start,
//! wherever in the step or the checkpoint write it then is (and, by
//! fault injection, inside a checkpoint write: after its weight files,
//! and between the renames of the swap), resumed each time with
//! `--resume`, and its final checkpoint must equal an uninterrupted run's
//! tensor for tensor, bitwise. Several kill schedules.
#[path = "../host/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scorecl_host::nn::checkpoint::read_f32_tensors;

fn scorecl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scorecl"));
    c.env("NODEVICE_SELECT", "1")
        .env_remove("SCORECL_CRASH_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn preset() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/tiny-simclr.toml")
}

/// The tiny preset for 3 epochs (24 steps, a checkpoint per epoch).
fn start(out: &Path) -> Command {
    let mut c = scorecl();
    c.args(["train", "--config"])
        .arg(preset())
        .args(["--epochs", "3", "--quiet", "--out"])
        .arg(out);
    c
}

fn resume(out: &Path) -> Command {
    let mut c = scorecl();
    c.args(["train", "--quiet", "--resume"]).arg(out);
    c
}

/// Kills as (steps past the checkpoint, ms), then crash points.
type Schedule = (Vec<(u64, u64)>, Vec<&'static str>);

fn has_checkpoint(out: &Path) -> bool {
    ["checkpoint", "checkpoint.prev", "checkpoint.old"]
        .iter()
        .any(|d| out.join(d).join("state.json").exists())
}

/// Every tensor of every weight file of the final checkpoint, as bits.
fn tensors(out: &Path) -> Vec<(String, Vec<u32>)> {
    let mut all = Vec::new();
    for f in [
        "backbone.safetensors",
        "heads.safetensors",
        "score.safetensors",
        "optimizer.safetensors",
    ] {
        let (t, _) = read_f32_tensors(&out.join("checkpoint").join(f)).unwrap();
        let mut t: Vec<_> = t
            .into_iter()
            .map(|(k, (_, v))| (format!("{f}:{k}"), v.iter().map(|x| x.to_bits()).collect()))
            .collect();
        t.sort();
        all.extend(t);
    }
    all
}

/// The step the checkpoint to resume from was written at (0: none).
fn checkpoint_step(out: &Path) -> u64 {
    ["checkpoint", "checkpoint.prev", "checkpoint.old"]
        .iter()
        .find_map(|d| std::fs::read_to_string(out.join(d).join("state.json")).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["state"]["step"].as_u64())
        .unwrap_or(0)
}

/// The last step logged in `metrics.jsonl` (the preset logs every step).
fn logged_step(out: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "step")
        .and_then(|v| v["step"].as_u64())
}

/// Runs `cmd` to completion, or kills it (SIGKILL) once it has logged
/// `after` steps past its checkpoint, plus `jitter` ms (so the kill falls
/// anywhere in a step or a checkpoint write); returns whether it finished
/// by itself, successfully.
fn run_or_kill(mut cmd: Command, out: &Path, after: Option<(u64, u64)>) -> bool {
    let base = checkpoint_step(out);
    let mut child = cmd.spawn().unwrap();
    let mut reached: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if let Some((steps, jitter)) = after {
            if reached.is_none() && logged_step(out).is_some_and(|s| s >= base + steps) {
                reached = Some(Instant::now());
            }
            if reached.is_some_and(|t| t.elapsed() >= Duration::from_millis(jitter)) {
                child.kill().unwrap(); // SIGKILL on Unix
                child.wait().unwrap();
                return false;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Trains in `out` until done, crashing it inside the checkpoints of
/// `crashes` (`SCORECL_CRASH_AT` values), then killing it at each of
/// `kills` ((steps past its checkpoint, ms)), resuming after each. Returns
/// how many kills landed before the run finished.
fn interrupted(out: &Path, kills: &[(u64, u64)], crashes: &[&str]) -> usize {
    let next = |out: &Path| {
        if has_checkpoint(out) {
            resume(out)
        } else {
            start(out)
        }
    };
    for c in crashes {
        let mut cmd = next(out);
        cmd.env("SCORECL_CRASH_AT", c);
        let finished = run_or_kill(cmd, out, None);
        assert!(!finished, "the crash point {c} was not reached");
    }
    let mut landed = 0;
    for &k in kills {
        if run_or_kill(next(out), out, Some(k)) {
            return landed;
        }
        landed += 1;
    }
    let mut last = next(out).output().unwrap();
    if !last.status.success() {
        // Killed before the first checkpoint by the last kill: start again.
        last = next(out).output().unwrap();
    }
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    landed
}

#[test]
fn killed_anywhere_the_run_resumes_to_the_same_parameters_bitwise() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let out = start(&reference).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = tensors(&reference);
    assert!(want.len() > 100, "{} tensors", want.len());
    // Kills 1–5 steps past the checkpoint each attempt starts from (8 steps
    // remain after any checkpoint but the last, so each lands mid-run),
    // 0–39 ms later, from a fixed LCG; and crashes inside checkpoint writes:
    // after the weight files of step 8's checkpoint, in the swaps of steps
    // 16 and 24 (the last; there is an old checkpoint to move aside only
    // from the second on).
    let mut x = 0x9e37_79b9u64;
    let mut draw = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = x >> 33;
        (1 + r % 5, (r >> 8) % 40)
    };
    let schedules: Vec<Schedule> = vec![
        (vec![], vec!["write:8", "swap:16"]),
        ((0..4).map(|_| draw()).collect(), vec![]),
        ((0..3).map(|_| draw()).collect(), vec!["swap:24"]),
    ];
    for (i, (kills, crashes)) in schedules.iter().enumerate() {
        let out = tmp.path().join(format!("killed-{i}"));
        let landed = interrupted(&out, kills, crashes);
        assert!(
            kills.is_empty() || landed >= 1,
            "schedule {i}: no kill landed before the run finished"
        );
        let got = tensors(&out);
        assert_eq!(got.len(), want.len(), "schedule {i}: tensor count");
        for ((gn, gv), (wn, wv)) in got.iter().zip(&want) {
            assert_eq!(gn, wn, "schedule {i}");
            assert!(
                gv == wv,
                "schedule {i} (kills {kills:?} (steps, ms), crashes {crashes:?}): {gn} differs \
                 from the uninterrupted run"
            );
        }
    }
}

//! `mpirun -n 2 scorecl train …` (feature `mpi`; CI installs Open MPI):
//!
//! - two MPI ranks at the global batch of one rank: every logged loss within
//!   1e-4 + 1e-3 relative of one rank's, and every checkpointed parameter
//!   and running statistic within 5e-3 of its tensor's scale (floor 1e-3;
//!   as `tests/dist.rs`, at a hundredth of the tiny preset's learning rate);
//! - a rank killed mid-run (SIGKILL): `mpirun` ends the other and exits
//!   non-zero naming rank 1 within 60 s; the last checkpoint is intact,
//!   resumes on one rank, and ends where the uninterrupted two-rank run
//!   ends (the same tolerance);
//! - a rank that stops answering (SIGSTOP): the other gives up after
//!   `SCORECL_DIST_TIMEOUT` (3 s here), names it and ends the job
//!   non-zero.
#![cfg(feature = "mpi")]

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOL: f32 = 5e-3;
const FLOOR: f32 = 1e-3;

fn scorecl_args(cmd: &mut Command, cfg: &Path, out: &Path) {
    cmd.arg(env!("CARGO_BIN_EXE_scorecl"))
        .args(["train", "--quiet", "--device", "cpu", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out);
}

/// `mpirun -n ranks scorecl train --config cfg --out out`.
fn mpirun(ranks: usize, cfg: &Path, out: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("NODEVICE_SELECT", "1")
        .args(["--oversubscribe", "-n", &ranks.to_string()]);
    scorecl_args(&mut c, cfg, out);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// The scorecl process of `rank` under the mpirun `parent`.
fn rank_pid(parent: &Child, rank: usize) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 4, after the parenthesised command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent.id()) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

fn signal(pid: u32, sig: &str) {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
}

/// Waits for `child` at most `limit`; its output, or None (killed then).
fn wait_for(mut child: Child, limit: Duration) -> Option<Output> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    None
}

#[test]
fn two_mpi_ranks_train_as_one_rank_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::calm_config(dir.path(), 3);
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    support::assert_success(&support::train_cli(&cfg, &one, &[]), "one rank");
    support::assert_success(&mpirun(2, &cfg, &two).output().unwrap(), "mpirun -n 2");
    let (a, b) = (support::logged_losses(&two), support::logged_losses(&one));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 + 1e-3 * y.abs(),
            "step {i}: loss {x} vs {y}"
        );
    }
    let (e, at) = support::worst_rel(
        &support::checkpoint_tensors(&two),
        &support::checkpoint_tensors(&one),
        FLOOR,
    );
    eprintln!("two MPI ranks against one: largest parameter difference {e:e} ({at})");
    assert!(e <= TOL, "{at} differs by {e:e} of its scale");
}

#[test]
fn a_killed_rank_ends_the_run_naming_it_and_its_checkpoint_resumes_on_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::calm_config(dir.path(), 5);
    let (straight, killed) = (dir.path().join("straight"), dir.path().join("killed"));
    support::assert_success(
        &mpirun(2, &cfg, &straight).output().unwrap(),
        "uninterrupted mpirun -n 2",
    );
    let child = mpirun(2, &cfg, &killed).spawn().unwrap();
    // After the first epoch's checkpoint.
    let t0 = Instant::now();
    while !killed.join("checkpoint/state.json").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rank_pid(&child, 1).expect("rank 1's process");
    signal(pid, "-KILL");
    let t1 = Instant::now();
    let out =
        wait_for(child, Duration::from_secs(60)).expect("mpirun still running 60 s after the kill");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "mpirun succeeded after a rank was killed"
    );
    assert!(
        err.contains("rank 1"),
        "the message does not name rank 1:\n{err}"
    );
    eprintln!(
        "mpirun ended {:.1} s after the kill",
        t1.elapsed().as_secs_f64()
    );
    // The checkpoint left behind resumes on one rank to the end.
    let mut c = Command::new(env!("CARGO_BIN_EXE_scorecl"));
    c.env("NODEVICE_SELECT", "1")
        .args(["train", "--quiet", "--device", "cpu", "--resume"])
        .arg(&killed);
    support::assert_success(&c.output().unwrap(), "resume on one rank");
    let (e, at) = support::worst_rel(
        &support::checkpoint_tensors(&killed),
        &support::checkpoint_tensors(&straight),
        FLOOR,
    );
    eprintln!("resumed on one rank against two: largest parameter difference {e:e} ({at})");
    assert!(e <= TOL, "{at} differs by {e:e} of its scale");
}

#[test]
fn a_rank_that_stops_answering_ends_the_run_after_the_timeout_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::calm_config(dir.path(), 50);
    let out_dir = dir.path().join("hung");
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("NODEVICE_SELECT", "1")
        .env("SCORECL_DIST_TIMEOUT", "3")
        .args(["--oversubscribe", "-x", "SCORECL_DIST_TIMEOUT", "-n", "2"]);
    scorecl_args(&mut c, &cfg, &out_dir);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let t0 = Instant::now();
    while !out_dir.join("metrics.jsonl").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rank_pid(&child, 1).expect("rank 1's process");
    signal(pid, "-STOP");
    let out = wait_for(child, Duration::from_secs(60));
    signal(pid, "-KILL");
    let out = out.expect("mpirun still running 60 s after rank 1 stopped");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("did not complete within 3 s") && err.contains("rank 1"),
        "{err}"
    );
}

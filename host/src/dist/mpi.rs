//! [`MpiComm`]: the ranks of `mpirun -n K scorecl train …`, through the
//! `mpi` crate (Open MPI or MPICH).
//!
//! MPI lives on a thread of its own (initialised there with
//! `MPI_THREAD_FUNNELED`, so every MPI call is that thread's): the trainer's
//! thread hands it each collective and waits for the answer, or hands it the
//! gradients' all-reduce and goes on computing ([`Comm::start_all_reduce_sum`])
//! while the exchange makes progress.
//!
//! A rank that dies ends the whole job: `mpirun` stops the others and names
//! it ("process rank 1 … exited on signal 9"). A rank that hangs is caught
//! by the deadline on every collective (`SCORECL_DIST_TIMEOUT` seconds, 1800
//! by default): the rank that waited that long says so, naming the other
//! rank when there are two (MPI cannot tell which of more stopped
//! answering), and exits non-zero, upon which `mpirun` ends the job.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use mpi::datatype::PartitionMut;
use mpi::traits::*;

use super::{Comm, Pending};
use crate::error::{Error, Result};

/// A collective for the MPI thread, with where its answer goes.
enum Job {
    Gather(Vec<f32>, Sender<Vec<f32>>),
    Reduce(Vec<f32>, Sender<Vec<f32>>),
    GatherBytes(Vec<u8>, Sender<Vec<Vec<u8>>>),
    Abort,
}

/// This process's rank of the MPI world (MPI initialised on its own thread
/// once, finalised when this is dropped).
pub struct MpiComm {
    rank: usize,
    size: usize,
    library: String,
    /// Longest wait for one collective.
    timeout: Duration,
    jobs: Option<Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MpiComm {
    /// Initialises MPI (once per process) on its own thread and joins its
    /// world; an error when MPI was initialised before or
    /// `SCORECL_DIST_TIMEOUT` is not a positive number of seconds.
    pub fn init() -> Result<MpiComm> {
        let timeout = match std::env::var("SCORECL_DIST_TIMEOUT") {
            Err(_) => Duration::from_secs(1800),
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(s) if s > 0.0 => Duration::from_secs_f64(s),
                _ => {
                    return Err(Error::config(
                        "SCORECL_DIST_TIMEOUT",
                        format!("`{v}`: seconds, a positive number"),
                    ))
                }
            },
        };
        let (jobs, inbox) = channel::<Job>();
        let (ready, started) = channel::<Option<(usize, usize, String)>>();
        let thread = std::thread::Builder::new()
            .name("scorecl-mpi".into())
            .spawn(move || serve(inbox, ready))
            .map_err(|e| Error::Peer {
                rank: 0,
                message: format!("cannot start the MPI thread: {e}"),
            })?;
        let (rank, size, library) = started.recv().ok().flatten().ok_or_else(|| Error::Peer {
            rank: 0,
            message: "MPI could not be initialised (initialised twice in one process?)".into(),
        })?;
        Ok(MpiComm {
            rank,
            size,
            library,
            timeout,
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| Error::Peer {
                rank: self.rank,
                message: "the MPI thread has stopped".into(),
            })
    }

    /// Waits for an answer until the deadline; past it, says so and exits
    /// non-zero (`mpirun` then ends every rank).
    fn wait<T>(&self, rx: Receiver<T>, what: &str) -> Result<T> {
        wait_answer(rx, self.timeout, self.rank, self.size, what)
    }
}

/// The deadline of every collective, for [`MpiComm`] and its started
/// all-reduces.
fn wait_answer<T>(
    rx: Receiver<T>,
    timeout: Duration,
    rank: usize,
    size: usize,
    what: &str,
) -> Result<T> {
    match rx.recv_timeout(timeout) {
        Ok(v) => Ok(v),
        Err(RecvTimeoutError::Disconnected) => Err(Error::Peer {
            rank,
            message: format!("the MPI thread stopped during the {what}"),
        }),
        Err(RecvTimeoutError::Timeout) => {
            // Of two ranks, the other one; of more, MPI cannot say which.
            let who = match size {
                2 => format!("rank {} hangs or died", 1 - rank),
                _ => "another rank hangs or died".to_string(),
            };
            eprintln!(
                "error: rank {rank}: the {what} did not complete within {:.0} s \
                 (SCORECL_DIST_TIMEOUT): {who}; ending the run",
                timeout.as_secs_f64()
            );
            // The MPI thread is stuck in the collective: leave without
            // finalising; mpirun ends the other ranks.
            std::process::exit(3);
        }
    }
}

/// The MPI thread: initialises MPI, says who it is, then runs the jobs in
/// order until the handle is dropped.
fn serve(inbox: Receiver<Job>, ready: Sender<Option<(usize, usize, String)>>) {
    let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Funneled) else {
        let _ = ready.send(None);
        return;
    };
    let world = universe.world();
    // "Open MPI v4.1.4, package: …": the name and version.
    let lib = mpi::environment::library_version().unwrap_or_default();
    let library = lib
        .split([',', '\n'])
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let _ = ready.send(Some((
        world.rank() as usize,
        world.size() as usize,
        library,
    )));
    let size = world.size() as usize;
    while let Ok(job) = inbox.recv() {
        match job {
            Job::Gather(local, reply) => {
                let mut out = vec![0f32; local.len() * size];
                world.all_gather_into(&local[..], &mut out[..]);
                let _ = reply.send(out);
            }
            Job::Reduce(buf, reply) => {
                let mut out = vec![0f32; buf.len()];
                world.all_reduce_into(
                    &buf[..],
                    &mut out[..],
                    mpi::collective::SystemOperation::sum(),
                );
                let _ = reply.send(out);
            }
            Job::GatherBytes(local, reply) => {
                let mut lens = vec![0i32; size];
                world.all_gather_into(&(local.len() as i32), &mut lens[..]);
                let displs: Vec<i32> = lens
                    .iter()
                    .scan(0i32, |acc, &l| {
                        let at = *acc;
                        *acc += l;
                        Some(at)
                    })
                    .collect();
                let mut all = vec![0u8; lens.iter().map(|&l| l as usize).sum()];
                {
                    let mut part = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
                    world.all_gather_varcount_into(&local[..], &mut part);
                }
                let _ = reply.send(
                    lens.iter()
                        .zip(&displs)
                        .map(|(&l, &d)| all[d as usize..(d + l) as usize].to_vec())
                        .collect(),
                );
            }
            Job::Abort => {
                eprintln!(
                    "rank {}: ending every rank of the run (MPI_Abort)",
                    world.rank()
                );
                world.abort(1);
            }
        }
    }
    // The universe drops here: MPI_Finalize on the thread that initialised.
}

impl Drop for MpiComm {
    fn drop(&mut self) {
        // Closing the queue ends the thread, which finalises MPI.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        let (tx, rx) = channel();
        self.send(Job::Gather(local.to_vec(), tx))?;
        self.wait(rx, "gather")
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let (tx, rx) = channel();
        self.send(Job::Reduce(buf.to_vec(), tx))?;
        buf.copy_from_slice(&self.wait(rx, "all-reduce")?);
        Ok(())
    }
    fn start_all_reduce_sum(&self, buf: Vec<f32>) -> Result<Pending> {
        let (tx, rx) = channel();
        self.send(Job::Reduce(buf, tx))?;
        let (timeout, rank, size) = (self.timeout, self.rank, self.size);
        Ok(Pending::later(move || {
            wait_answer(rx, timeout, rank, size, "gradients' all-reduce")
        }))
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        let (tx, rx) = channel();
        self.send(Job::GatherBytes(local.to_vec(), tx))?;
        self.wait(rx, "start-up check")
    }
    fn abort(&self) {
        if self.size > 1 && self.send(Job::Abort).is_ok() {
            // MPI_Abort ends this process too; wait for it.
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    fn transport(&self) -> String {
        format!("MPI: {}", self.library)
    }
}

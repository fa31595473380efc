//! [`MpiComm`]: the ranks of `mpirun -n K scorecl train …`, through the
//! `mpi` crate (Open MPI or MPICH). A rank that dies ends the whole job:
//! `mpirun` stops the others and names it ("process rank 1 … exited on
//! signal 9"). A rank that hangs is caught by the deadline on every
//! collective (`SCORECL_DIST_TIMEOUT` seconds, 1800 by default): the rank
//! that waited that long says so and aborts the job (MPI cannot tell
//! which of the others stopped answering).

use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::request::{Request, Scope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Comm;
use crate::error::{Error, Result};

/// The MPI world of this process (initialised once, finalised on drop).
pub struct MpiComm {
    world: SimpleCommunicator,
    /// Longest wait for one collective.
    timeout: Duration,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

impl MpiComm {
    /// Initialises MPI (once per process) and joins its world; an error
    /// when MPI was initialised before.
    pub fn init() -> Result<MpiComm> {
        let universe = mpi::initialize().ok_or_else(|| Error::Peer {
            rank: 0,
            message: "MPI was initialised twice in one process".into(),
        })?;
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
        Ok(MpiComm {
            world: universe.world(),
            timeout,
            _universe: universe,
        })
    }

    /// Waits for `req` until the deadline; past it, says so and aborts
    /// the job (every rank ends, non-zero).
    fn finish<'a, D: ?Sized, S: Scope<'a>>(&self, mut req: Request<'a, D, S>, what: &str) {
        let deadline = Instant::now() + self.timeout;
        let mut spins = 0u32;
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => req = r,
            }
            if Instant::now() > deadline {
                let me = self.world.rank();
                // Of two ranks, the other one; of more, MPI cannot say which.
                let who = match self.world.size() {
                    2 => format!("rank {} hangs or died", 1 - me),
                    _ => "another rank hangs or died".to_string(),
                };
                eprintln!(
                    "error: rank {me}: the {what} did not complete within {:.0} s \
                     (SCORECL_DIST_TIMEOUT): {who}; ending the run",
                    self.timeout.as_secs_f64()
                );
                self.world.abort(3);
            }
            spins += 1;
            if spins < 1000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; local.len() * self.size()];
        mpi::request::scope(|scope| {
            let req = self
                .world
                .immediate_all_gather_into(scope, local, &mut out[..]);
            self.finish(req, "gather");
        });
        Ok(out)
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        mpi::request::scope(|scope| {
            let req = self.world.immediate_all_reduce_into(
                scope,
                &send[..],
                buf,
                mpi::collective::SystemOperation::sum(),
            );
            self.finish(req, "all-reduce");
        });
        Ok(())
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        let size = self.size();
        let mut lens = vec![0i32; size];
        self.world
            .all_gather_into(&(local.len() as i32), &mut lens[..]);
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
            mpi::request::scope(|scope| {
                let req = self
                    .world
                    .immediate_all_gather_varcount_into(scope, local, &mut part);
                self.finish(req, "start-up check");
            });
        }
        Ok(lens
            .iter()
            .zip(&displs)
            .map(|(&l, &d)| all[d as usize..(d + l) as usize].to_vec())
            .collect())
    }
    fn abort(&self) {
        if self.world.size() > 1 {
            eprintln!(
                "rank {}: ending every rank of the run (MPI_Abort)",
                self.world.rank()
            );
            self.world.abort(1);
        }
    }
    fn transport(&self) -> String {
        let lib = mpi::environment::library_version().unwrap_or_default();
        // "Open MPI v4.1.4, package: …": the name and version.
        let first = lib
            .split([',', '\n'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        format!("MPI: {first}")
    }
}

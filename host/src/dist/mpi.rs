//! [`MpiComm`]: the ranks of `mpirun -n K scorecl train …`, through the
//! `mpi` crate (Open MPI or MPICH). MPI's default error handler ends the
//! whole job when a rank dies, and `mpirun` names the rank that did.

use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Comm;
use crate::error::{Error, Result};

/// The MPI world of this process (initialised once, finalised on drop).
pub struct MpiComm {
    world: SimpleCommunicator,
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
        Ok(MpiComm {
            world: universe.world(),
            _universe: universe,
        })
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
        self.world.all_gather_into(local, &mut out[..]);
        Ok(out)
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        self.world
            .all_reduce_into(&send[..], buf, mpi::collective::SystemOperation::sum());
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
            self.world.all_gather_varcount_into(local, &mut part);
        }
        Ok(lens
            .iter()
            .zip(&displs)
            .map(|(&l, &d)| all[d as usize..(d + l) as usize].to_vec())
            .collect())
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

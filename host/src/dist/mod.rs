//! Data-parallel training's communication: a [`Comm`] joins the ranks of
//! one run (one process each under `mpirun`, or threads of one process in
//! the tests), and a [`crate::step::Step`] runs its collectives in order
//! with the kernels ([`crate::step::Step::host`]).
//!
//! Implementations: [`Solo`] (one rank, every collective the identity),
//! [`ThreadComm`] (ranks as threads of one process: the tests, and
//! `--devices N` style use), and `MpiComm` (feature `mpi`: Open MPI or
//! MPICH through the `mpi` crate).
//!
//! Every collective gives every rank the same bits: [`Comm::all_reduce_sum`]
//! adds the ranks' values in rank order (ThreadComm) or as MPI reduces
//! them (MPI's result is the same on every rank), so the optimizer steps
//! of all ranks stay equal bit for bit.
//!
//! A rank that fails or stops answering makes the others' collectives
//! return [`Error::Peer`] naming it (ThreadComm: a rank that drops its
//! handle, or does not arrive within [`ThreadComm::timeout`]; MPI: the
//! launcher ends every rank when one dies).

use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::step::Step;
use crate::tensor::Tensor;

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "mpi")]
pub use self::mpi::MpiComm;

/// The ranks of a data-parallel run, as seen from one of them.
pub trait Comm {
    /// This rank (0-based).
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Every rank's `local` (the same length on each), concatenated in rank
    /// order, on every rank.
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>>;
    /// Element-wise sum over the ranks, in place; the same bits on every
    /// rank.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// [`Comm::all_reduce_sum`] started: the exchange makes progress while
    /// the caller computes, and [`Pending::wait`] gives the sum. Where the
    /// transport cannot (one rank, threads) it is done at once.
    fn start_all_reduce_sum(&self, mut buf: Vec<f32>) -> Result<Pending> {
        self.all_reduce_sum(&mut buf)?;
        Ok(Pending::ready(buf))
    }
    /// Every rank's bytes (any length), in rank order: the start-up check
    /// that all ranks run the same configuration and version.
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// What carries the messages (`solo`, `threads`, `MPI: Open MPI v4.1.4`).
    fn transport(&self) -> String;
    /// This rank failed (its error printed): end the other ranks now rather
    /// than let them wait for it. MPI aborts the job; a thread rank's
    /// handle, dropped, already tells the others.
    fn abort(&self) {}
}

/// A started all-reduce ([`Comm::start_all_reduce_sum`]).
pub struct Pending(Box<dyn FnOnce() -> Result<Vec<f32>>>);

impl Pending {
    /// Already done.
    pub fn ready(sum: Vec<f32>) -> Pending {
        Pending(Box::new(move || Ok(sum)))
    }

    /// Done when `wait` returns.
    pub fn later(wait: impl FnOnce() -> Result<Vec<f32>> + 'static) -> Pending {
        Pending(Box::new(wait))
    }

    /// The sum, once every rank's part has arrived.
    pub fn wait(self) -> Result<Vec<f32>> {
        (self.0)()
    }
}

/// One rank alone: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Comm for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(local.to_vec())
    }
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![local.to_vec()])
    }
    fn transport(&self) -> String {
        "solo".into()
    }
}

/// The state the ranks of a [`ThreadComm`] group share.
struct Shared {
    state: Mutex<Round>,
    cv: Condvar,
    size: usize,
}

/// One exchange at a time: each rank deposits its bytes, and once all have
/// (`arrived == size`) each takes a copy of all; the round ends when every
/// rank has taken its copy.
struct Round {
    slots: Vec<Option<Vec<u8>>>,
    arrived: usize,
    taken: usize,
    /// The exchange number, so a fast rank's next deposit waits for the
    /// slow ranks to take this one.
    generation: u64,
    /// Ranks that dropped their handle (a failed or finished rank).
    left: Vec<bool>,
}

/// Ranks as threads of one process ([`ThreadComm::group`]): each thread
/// holds one handle. Collectives wait at most [`ThreadComm::timeout`] for
/// the others, and a handle dropped while others still exchange (its
/// thread failed) ends their collectives with [`Error::Peer`] naming it.
pub struct ThreadComm {
    rank: usize,
    shared: Arc<Shared>,
    /// Longest wait for the other ranks in one collective.
    pub timeout: Duration,
}

impl ThreadComm {
    /// `size` handles of one group, rank 0 first.
    pub fn group(size: usize) -> Vec<ThreadComm> {
        let shared = Arc::new(Shared {
            state: Mutex::new(Round {
                slots: vec![None; size],
                arrived: 0,
                taken: 0,
                generation: 0,
                left: vec![false; size],
            }),
            cv: Condvar::new(),
            size,
        });
        (0..size)
            .map(|rank| ThreadComm {
                rank,
                shared: shared.clone(),
                timeout: Duration::from_secs(120),
            })
            .collect()
    }

    fn peer(&self, rank: usize, message: impl Into<String>) -> Error {
        Error::Peer {
            rank,
            message: message.into(),
        }
    }

    /// The first rank that left, if any.
    fn gone(r: &Round) -> Option<usize> {
        r.left.iter().position(|&l| l)
    }

    fn exchange(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        let sh = &*self.shared;
        let deadline = std::time::Instant::now() + self.timeout;
        fn wait<'a>(
            sh: &'a Shared,
            g: std::sync::MutexGuard<'a, Round>,
            deadline: std::time::Instant,
        ) -> std::sync::MutexGuard<'a, Round> {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (g, _) = sh
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner());
            g
        }
        let mut g = sh.state.lock().unwrap_or_else(|e| e.into_inner());
        // The previous round must be over before this one starts.
        while g.arrived == sh.size {
            if let Some(r) = Self::gone(&g) {
                return Err(self.peer(r, "left the run"));
            }
            if std::time::Instant::now() >= deadline {
                return Err(self.timeout_error(&g));
            }
            g = wait(sh, g, deadline);
        }
        let gen = g.generation;
        g.slots[self.rank] = Some(local.to_vec());
        g.arrived += 1;
        sh.cv.notify_all();
        while g.arrived < sh.size && g.generation == gen {
            if let Some(r) = Self::gone(&g) {
                return Err(self.peer(r, "left the run"));
            }
            if std::time::Instant::now() >= deadline {
                return Err(self.timeout_error(&g));
            }
            g = wait(sh, g, deadline);
        }
        let all: Vec<Vec<u8>> = g
            .slots
            .iter()
            .map(|s| s.clone().unwrap_or_default())
            .collect();
        g.taken += 1;
        if g.taken == sh.size {
            g.slots.iter_mut().for_each(|s| *s = None);
            g.arrived = 0;
            g.taken = 0;
            g.generation += 1;
            sh.cv.notify_all();
        }
        Ok(all)
    }

    fn timeout_error(&self, g: &Round) -> Error {
        let missing = (0..self.shared.size)
            .find(|&r| g.slots[r].is_none())
            .unwrap_or(0);
        self.peer(
            missing,
            format!(
                "did not reach the collective within {:.0} s (rank {} waited)",
                self.timeout.as_secs_f64(),
                self.rank
            ),
        )
    }
}

impl Drop for ThreadComm {
    fn drop(&mut self) {
        let mut g = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        g.left[self.rank] = true;
        self.shared.cv.notify_all();
    }
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        let all = self.exchange(bytemuck::cast_slice(local))?;
        let mut out = Vec::with_capacity(local.len() * all.len());
        for (r, b) in all.iter().enumerate() {
            if b.len() != std::mem::size_of_val(local) {
                return Err(self.peer(
                    r,
                    format!("gave {} values to a gather of {}", b.len() / 4, local.len()),
                ));
            }
            out.extend(bytemuck::pod_collect_to_vec::<u8, f32>(b));
        }
        Ok(out)
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let all = self.all_gather(buf)?;
        sum_in_rank_order(&all, buf);
        Ok(())
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.exchange(local)
    }
    fn transport(&self) -> String {
        "threads".into()
    }
}

/// `out[i] = Σ_r all[r·len + i]` added in rank order (`len = out.len()`).
pub(crate) fn sum_in_rank_order(all: &[f32], out: &mut [f32]) {
    let len = out.len();
    out.copy_from_slice(&all[..len]);
    for chunk in all[len..].chunks_exact(len.max(1)) {
        for (o, v) in out.iter_mut().zip(chunk) {
            *o += v;
        }
    }
}

/// Where a rank's samples sit in the global batch: rank `rank` of `size`
/// holds positions `rank·local .. (rank + 1)·local` of each view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub size: usize,
    /// Samples per rank (the global batch / size).
    pub local: usize,
}

impl Shard {
    /// One rank holding the whole batch of `n`.
    pub fn whole(n: usize) -> Shard {
        Shard {
            rank: 0,
            size: 1,
            local: n,
        }
    }

    /// The global batch.
    pub fn global(&self) -> usize {
        self.local * self.size
    }

    /// The first global position of this rank's samples.
    pub fn first(&self) -> usize {
        self.rank * self.local
    }

    /// The global index of local sample `i` of the view-stacked layout
    /// (view 1's `local` samples, then view 2's): view `i / local`,
    /// position `first + i % local` of the global batch's same view.
    pub fn global_index(&self, i: usize) -> usize {
        (i / self.local) * self.global() + self.first() + i % self.local
    }

    /// Reorders a gather of every rank's view-stacked rows (`views` views of
    /// `local` rows of `width` values per rank, ranks in order) into the
    /// global view-stacked layout: view 1 of every rank in rank order, then
    /// view 2's.
    pub fn regroup(&self, gathered: &[f32], views: usize, width: usize) -> Vec<f32> {
        let per_view = self.local * width;
        let mut out = Vec::with_capacity(gathered.len());
        for v in 0..views {
            for r in 0..self.size {
                let at = (r * views + v) * per_view;
                out.extend_from_slice(&gathered[at..at + per_view]);
            }
        }
        out
    }
}

/// A rank's configuration and version, compared across ranks at start.
pub fn check_same(comm: &dyn Comm, what: &str, mine: &[u8]) -> Result<()> {
    let all = comm.all_gather_bytes(mine)?;
    match all.iter().position(|b| b != &all[0]) {
        None => Ok(()),
        Some(r) => Err(Error::Peer {
            rank: r,
            message: format!("its {what} differs from rank 0's; every rank must run the same"),
        }),
    }
}

/// This process's (local rank, local size) on its machine when an MPI
/// launcher started it (Open MPI's `OMPI_COMM_WORLD_LOCAL_RANK` and
/// `_LOCAL_SIZE`, MPICH's `MPI_LOCALRANKID` and `MPI_LOCALNRANKS`).
pub fn launcher_local_rank() -> Option<(usize, usize)> {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    let rank = var("OMPI_COMM_WORLD_LOCAL_RANK").or_else(|| var("MPI_LOCALRANKID"))?;
    let size = var("OMPI_COMM_WORLD_LOCAL_SIZE")
        .or_else(|| var("MPI_LOCALNRANKS"))
        .unwrap_or(1);
    Some((rank, size.max(1)))
}

/// The number of ranks an MPI launcher started (Open MPI's
/// `OMPI_COMM_WORLD_SIZE`, MPICH's `PMI_SIZE`), read before MPI starts.
pub fn launcher_world_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find_map(|v| v.parse::<usize>().ok())
}

/// The ranks of this process's run: MPI's world when an MPI launcher
/// started more than one rank (feature `mpi`), else [`Solo`]. Without the
/// feature, a launch of several ranks is refused rather than run as that
/// many independent copies.
pub fn from_launcher() -> Result<Link> {
    match launcher_world_size() {
        Some(k) if k > 1 => {
            #[cfg(feature = "mpi")]
            {
                Ok(Rc::new(MpiComm::init()?))
            }
            #[cfg(not(feature = "mpi"))]
            {
                Err(Error::Peer {
                    rank: 0,
                    message: format!(
                        "started as one of {k} MPI ranks, but this scorecl was built without \
                         MPI: build it with `cargo build --release --features mpi`"
                    ),
                })
            }
        }
        _ => Ok(Rc::new(Solo)),
    }
}

/// On the native CPU device, the ranks of one machine share its cores:
/// unless `RAYON_NUM_THREADS` is set, each rank's pool gets cores / local
/// ranks threads (at least one). Call before the first parallel work.
pub fn split_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    if let Some((_, local)) = launcher_local_rank().filter(|(_, l)| *l > 1) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / local).max(1);
        // An error only means the pool exists already (nothing to split).
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
}

/// A run's link to its ranks.
pub type Link = Rc<dyn Comm>;

/// Records in `step` the sum over the ranks of `tensors` as one bucket
/// (concatenated, one all-reduce, split back), then scaled by `scale`
/// (1/size for a mean) where it is not 1.
pub fn all_reduce(
    step: &mut Step<'_>,
    comm: &Link,
    name: &str,
    tensors: &[&Tensor],
    scale: f32,
) -> Result<()> {
    let comm = comm.clone();
    step.host(name, tensors, move |values| {
        let mut bucket: Vec<f32> = values.iter().flatten().copied().collect();
        comm.all_reduce_sum(&mut bucket)?;
        if scale != 1.0 {
            bucket.iter_mut().for_each(|v| *v *= scale);
        }
        split_back(values, &bucket);
        Ok(())
    })
}

/// Writes a bucket back into the tensors' values it was concatenated
/// from, in order.
fn split_back(values: &mut [Vec<f32>], bucket: &[f32]) {
    let mut at = 0;
    for v in values.iter_mut() {
        let len = v.len();
        v.copy_from_slice(&bucket[at..at + len]);
        at += len;
    }
}

/// The gradients' all-reduce between [`all_reduce_start`] and
/// [`all_reduce_finish`], held by the step's two host operations.
pub type Started = Rc<std::cell::RefCell<Option<Pending>>>;

/// Records in `step` the start of the sum over the ranks of `tensors` as
/// one bucket: the commands recorded after it run while it makes progress
/// (on a transport that can), until [`all_reduce_finish`] waits for it and
/// writes the sums back. Returns the handle the finish takes.
pub fn all_reduce_start(
    step: &mut Step<'_>,
    comm: &Link,
    name: &str,
    tensors: &[&Tensor],
) -> Result<Started> {
    let comm = comm.clone();
    let slot: Started = Rc::new(std::cell::RefCell::new(None));
    let held = slot.clone();
    step.host(name, tensors, move |values| {
        let bucket: Vec<f32> = values.iter().flatten().copied().collect();
        *held.borrow_mut() = Some(comm.start_all_reduce_sum(bucket)?);
        Ok(())
    })?;
    Ok(slot)
}

/// Records in `step` the end of [`all_reduce_start`]'s exchange: waits for
/// the sums and writes them into `tensors` (the same, in the same order).
pub fn all_reduce_finish(
    step: &mut Step<'_>,
    started: Started,
    name: &str,
    tensors: &[&Tensor],
) -> Result<()> {
    step.host(name, tensors, move |values| {
        let pending = started.borrow_mut().take().ok_or_else(|| {
            Error::shape("all-reduce", "finished before it was started".to_string())
        })?;
        let bucket = pending.wait()?;
        let total: usize = values.iter().map(Vec::len).sum();
        if bucket.len() != total {
            return Err(Error::shape(
                "all-reduce",
                format!("{} values back for {total}", bucket.len()),
            ));
        }
        split_back(values, &bucket);
        Ok(())
    })
}

/// Records in `step` the gather of every rank's view-stacked `local` rows
/// (`views` views of `shard.local` rows of `width`) into `global`, in the
/// global view-stacked layout ([`Shard::regroup`]).
#[allow(clippy::too_many_arguments)]
pub fn all_gather_views(
    step: &mut Step<'_>,
    comm: &Link,
    shard: Shard,
    name: &str,
    local: &Tensor,
    global: &Tensor,
    views: usize,
    width: usize,
) -> Result<()> {
    let comm = comm.clone();
    step.host(name, &[local, global], move |values| {
        let all = comm.all_gather(&values[0])?;
        values[1] = shard.regroup(&all, views, width);
        Ok(())
    })
}

/// What a rank exchanged through a [`Metered`] link: its collectives, the
/// bytes it contributed to them (its own payload: a gather's local part, an
/// all-reduce's whole buffer) and the seconds it spent in them (waiting for
/// the other ranks included).
#[derive(Debug, Default)]
pub struct Meter {
    calls: std::cell::Cell<u64>,
    bytes: std::cell::Cell<u64>,
    seconds: std::cell::Cell<f64>,
}

impl Meter {
    /// (collectives, payload bytes, seconds) so far.
    pub fn totals(&self) -> (u64, u64, f64) {
        (self.calls.get(), self.bytes.get(), self.seconds.get())
    }

    fn add(&self, bytes: usize, t0: std::time::Instant) {
        self.calls.set(self.calls.get() + 1);
        self.bytes.set(self.bytes.get() + bytes as u64);
        self.seconds
            .set(self.seconds.get() + t0.elapsed().as_secs_f64());
    }
}

/// A link that counts what goes through it ([`metered`]).
pub struct Metered {
    inner: Link,
    meter: Rc<Meter>,
}

/// `inner` with a [`Meter`] on every collective.
pub fn metered(inner: Link) -> (Link, Rc<Meter>) {
    let meter = Rc::new(Meter::default());
    let link = Rc::new(Metered {
        inner,
        meter: meter.clone(),
    });
    (link, meter)
}

impl Comm for Metered {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        let t0 = std::time::Instant::now();
        let out = self.inner.all_gather(local);
        self.meter.add(4 * local.len(), t0);
        out
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let t0 = std::time::Instant::now();
        let out = self.inner.all_reduce_sum(buf);
        self.meter.add(4 * buf.len(), t0);
        out
    }
    fn start_all_reduce_sum(&self, buf: Vec<f32>) -> Result<Pending> {
        let t0 = std::time::Instant::now();
        let bytes = 4 * buf.len();
        let pending = self.inner.start_all_reduce_sum(buf)?;
        self.meter.add(bytes, t0);
        // The wait is counted when it happens (the time not hidden).
        let meter = self.meter.clone();
        Ok(Pending::later(move || {
            let t1 = std::time::Instant::now();
            let out = pending.wait();
            meter
                .seconds
                .set(meter.seconds.get() + t1.elapsed().as_secs_f64());
            out
        }))
    }
    fn all_gather_bytes(&self, local: &[u8]) -> Result<Vec<Vec<u8>>> {
        let t0 = std::time::Instant::now();
        let out = self.inner.all_gather_bytes(local);
        self.meter.add(local.len(), t0);
        out
    }
    fn transport(&self) -> String {
        self.inner.transport()
    }
    fn abort(&self) {
        self.inner.abort()
    }
}

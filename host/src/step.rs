//! A step: every dispatch, copy and readback of one unit of work, recorded
//! first and then encoded into one command encoder and submitted once (on
//! the native CPU device: executed in order by the Rust twins of the
//! kernels, `crate::native`). Nothing is read back unless the caller asked
//! for it with [`Step::readback`]. A host operation ([`Step::host`]: a
//! data-parallel run's exchanges) runs between the commands around it: on
//! a wgpu device the step is then submitted in parts around it.
//!
//! Kernel parameters are packed into one uniform arena per step (one
//! 256-byte slot per dispatch, bound with a dynamic offset) and written with
//! a single `write_buffer`. The arena buffer is kept by the [`Gpu`] and
//! grows only when a step needs more slots than any before it.

use std::sync::Arc;

use crate::error::{Error, GpuError, Result};
use crate::gpu::{Backend, Gpu};
use crate::kernel::{Binding, Kernel, PARAMS_SLOT};
use crate::tensor::{Buffer, Tensor};

/// A host operation recorded in a step ([`Step::host`]): it gets the
/// tensors' values as they stand at that point of the step and may change
/// them.
pub type HostOp<'g> = Box<dyn FnMut(&mut [Vec<f32>]) -> Result<()> + 'g>;

enum Command<'g> {
    Dispatch {
        kernel: Arc<Kernel>,
        params: Option<u32>,
        buffers: Vec<(Buffer, u64)>,
        groups: [u32; 3],
    },
    Copy {
        src: Buffer,
        src_off: u64,
        dst: Buffer,
        dst_off: u64,
        bytes: u64,
    },
    Readback {
        src: Buffer,
        bytes: u64,
    },
    /// Zeroes a whole buffer with the encoder's fill command (no dispatch).
    Clear {
        dst: Buffer,
        bytes: u64,
    },
    /// Runs `op` on the host over the f32 values of `buffers` (each
    /// `len` elements) between the commands before and after it: a
    /// data-parallel run's collectives (`crate::dist`).
    Host {
        name: String,
        buffers: Vec<(Buffer, usize)>,
        op: std::cell::RefCell<HostOp<'g>>,
    },
}

impl Command<'_> {
    /// Every buffer the command touches.
    fn buffers(&self) -> Vec<&Buffer> {
        match self {
            Command::Dispatch { buffers, .. } => buffers.iter().map(|(b, _)| b).collect(),
            Command::Copy { src, dst, .. } => vec![src, dst],
            Command::Readback { src, .. } => vec![src],
            Command::Clear { dst, .. } => vec![dst],
            Command::Host { buffers, .. } => buffers.iter().map(|(b, _)| b).collect(),
        }
    }
}

/// The wgpu buffer of a command checked by [`Step::submit`] to hold wgpu
/// buffers only.
fn wb(b: &Buffer) -> &wgpu::Buffer {
    match b {
        Buffer::Wgpu(b) => b,
        Buffer::Host(_) => unreachable!("submit checks that a wgpu step holds wgpu buffers"),
    }
}

/// Recorded work, submitted by [`Step::submit`].
pub struct Step<'g> {
    gpu: &'g Gpu,
    label: String,
    commands: Vec<Command<'g>>,
    params: Vec<u8>,
    readbacks: usize,
    timestamps: bool,
    started: std::time::Instant,
    /// The ranks whose batch statistics the step's training batch norms
    /// share (`crate::ops::batchnorm`), in a data-parallel run with
    /// `train.sync_batchnorm`.
    sync_bn: Option<crate::dist::Link>,
}

/// What a submitted step read back, and its kernel timings if asked for.
#[derive(Debug, Default)]
pub struct Readbacks {
    data: Vec<Vec<u8>>,
    /// (kernel name, nanoseconds) per dispatch, when timestamps were on.
    pub timings: Vec<(String, f64)>,
    /// Host seconds from the step's creation until its submission returned
    /// (recording, encoding, bind groups, submit; not the wait for the
    /// GPU): the CPU cost of driving the step.
    pub host_seconds: f64,
}

impl Readbacks {
    /// Readback `i` as f32.
    pub fn f32(&self, i: usize) -> Vec<f32> {
        bytemuck::pod_collect_to_vec(&self.data[i])
    }

    /// Readback `i` as u32.
    pub fn u32(&self, i: usize) -> Vec<u32> {
        bytemuck::pod_collect_to_vec(&self.data[i])
    }

    /// Readback `i` as bytes.
    pub fn into_bytes(mut self, i: usize) -> Vec<u8> {
        std::mem::take(&mut self.data[i])
    }
}

/// Workgroups for `n` threads in groups of `wg`, as a 2-D grid within the
/// 65 535-per-dimension limit: `x` groups per row, `y` rows. Kernels index
/// with `id.x + id.y * nwg.x * wg`.
pub fn grid(n: usize, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as usize).max(1);
    if groups <= 65_535 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(65_535);
        [groups.div_ceil(y) as u32, y as u32, 1]
    }
}

impl Gpu {
    /// Starts recording a step.
    pub fn step(&self, label: &str) -> Step<'_> {
        Step {
            gpu: self,
            label: label.to_string(),
            commands: Vec::new(),
            params: Vec::new(),
            readbacks: 0,
            timestamps: false,
            started: std::time::Instant::now(),
            sync_bn: None,
        }
    }
}

impl<'g> Step<'g> {
    /// The GPU this step runs on.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Makes the step's batch norms in training use the batch statistics of
    /// all ranks of `comm` (synchronised batch norm).
    pub fn with_sync_batchnorm(mut self, comm: crate::dist::Link) -> Self {
        self.sync_bn = Some(comm);
        self
    }

    /// The ranks whose batch statistics this step's batch norms share.
    pub fn sync_batchnorm(&self) -> Option<&crate::dist::Link> {
        self.sync_bn.as_ref()
    }

    /// Times every dispatch with timestamp queries (where the adapter has
    /// them; otherwise no timings are returned).
    pub fn with_timestamps(mut self) -> Self {
        self.timestamps = self.gpu.caps.timestamps;
        self
    }

    /// Records a dispatch of `kernel` with `params` and the storage tensors
    /// in binding order, each named as the WGSL variable it binds
    /// ([`bind!`](crate::bind)); a missing, extra or misnamed tensor is
    /// refused naming the kernel and the binding. The first dispatch of a
    /// kernel with a parameters type checks it against the WGSL struct
    /// ([`Kernel::check_params`]).
    pub fn dispatch<P: crate::kernel::KernelParams>(
        &mut self,
        kernel: &Arc<Kernel>,
        params: &P,
        named: &[(&str, &Tensor)],
        groups: [u32; 3],
    ) -> Result<()> {
        if named.len() != kernel.storage_count() {
            return Err(GpuError::Kernel {
                kernel: kernel.name.clone(),
                message: format!(
                    "{} buffers given ({}), the kernel binds {} ({})",
                    named.len(),
                    named.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                    kernel.storage_count(),
                    kernel.storage_names.join(", ")
                ),
            }
            .into());
        }
        for (i, ((given, _), want)) in named.iter().zip(&kernel.storage_names).enumerate() {
            if given != want {
                return Err(GpuError::Kernel {
                    kernel: kernel.name.clone(),
                    message: format!(
                        "storage binding {i} is `{want}`, the dispatch passes `{given}` there \
                         (the kernel binds {})",
                        kernel.storage_names.join(", ")
                    ),
                }
                .into());
            }
        }
        let tensors: Vec<&Tensor> = named.iter().map(|(_, t)| *t).collect();
        if kernel.has_params() {
            kernel.check_params::<P>()?;
        }
        let max = self.gpu.caps.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|g| *g > max) {
            return Err(GpuError::Limit {
                what: kernel.name.clone(),
                message: format!("{groups:?} workgroups, at most {max} per dimension"),
            }
            .into());
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let max_binding = self.gpu.caps.limits.max_storage_buffer_binding_size;
        for t in &tensors {
            if t.bytes() > max_binding {
                return Err(GpuError::Limit {
                    what: kernel.name.clone(),
                    message: format!(
                        "{t:?} is {} bytes, max_storage_buffer_binding_size is {max_binding}",
                        t.bytes()
                    ),
                }
                .into());
            }
        }
        let params = if kernel.has_params() {
            let bytes = bytemuck::bytes_of(params);
            assert!(
                bytes.len() as u64 <= PARAMS_SLOT,
                "{}: params over 256 bytes",
                kernel.name
            );
            let offset = self.params.len();
            self.params.extend_from_slice(bytes);
            self.params.resize(offset + PARAMS_SLOT as usize, 0);
            Some(offset as u32)
        } else {
            None
        };
        self.commands.push(Command::Dispatch {
            kernel: kernel.clone(),
            params,
            buffers: tensors
                .iter()
                .map(|t| (t.buffer().clone(), t.bytes()))
                .collect(),
            groups,
        });
        Ok(())
    }

    /// Records a copy of `src` into `dst` (same byte length).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        if src.bytes() != dst.bytes() {
            return Err(Error::shape("copy", format!("{src:?} into {dst:?}")));
        }
        self.commands.push(Command::Copy {
            src: src.buffer().clone(),
            src_off: 0,
            dst: dst.buffer().clone(),
            dst_off: 0,
            bytes: src.bytes(),
        });
        Ok(())
    }

    /// Records a copy of `len` elements (4-byte types) from `src[src_off..]`
    /// to `dst[dst_off..]`.
    pub fn copy_range(
        &mut self,
        src: &Tensor,
        src_off: usize,
        dst: &Tensor,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        if src_off + len > src.len() || dst_off + len > dst.len() {
            return Err(Error::shape(
                "copy_range",
                format!("{len} elements from {src:?} at {src_off} into {dst:?} at {dst_off}"),
            ));
        }
        if len == 0 {
            return Ok(());
        }
        self.commands.push(Command::Copy {
            src: src.buffer().clone(),
            src_off: 4 * src_off as u64,
            dst: dst.buffer().clone(),
            dst_off: 4 * dst_off as u64,
            bytes: 4 * len as u64,
        });
        Ok(())
    }

    /// Records zeroing all of `t` with a buffer fill command (a transfer,
    /// not a dispatch: gradient zeroing costs no kernel launches).
    pub fn clear(&mut self, t: &Tensor) {
        self.commands.push(Command::Clear {
            dst: t.buffer().clone(),
            bytes: t.bytes(),
        });
    }

    /// Asks for `t` to be read back after the step; returns its index in
    /// the [`Readbacks`].
    pub fn readback(&mut self, t: &Tensor) -> usize {
        self.commands.push(Command::Readback {
            src: t.buffer().clone(),
            bytes: t.bytes(),
        });
        self.readbacks += 1;
        self.readbacks - 1
    }

    /// Records a host operation: when the step runs, the f32 values of
    /// `tensors` as the commands before it left them are given to `op`,
    /// and what it leaves in them is what the commands after it see. On a
    /// wgpu device the step is submitted in parts around it (a read back
    /// and a write, so each costs a round trip); on the native device it
    /// runs in line. `name` names it in errors and timings.
    pub fn host(
        &mut self,
        name: &str,
        tensors: &[&Tensor],
        op: impl FnMut(&mut [Vec<f32>]) -> Result<()> + 'g,
    ) -> Result<()> {
        for t in tensors {
            if t.dtype() != crate::tensor::DType::F32 {
                return Err(Error::shape(
                    format!("host operation `{name}`"),
                    format!("{t:?} is not f32"),
                ));
            }
        }
        self.commands.push(Command::Host {
            name: name.to_string(),
            buffers: tensors
                .iter()
                .map(|t| (t.buffer().clone(), t.len()))
                .collect(),
            op: std::cell::RefCell::new(Box::new(op)),
        });
        Ok(())
    }

    /// Runs a recorded host operation: reads its buffers, calls it, writes
    /// them back.
    fn run_host(
        gpu: &Gpu,
        name: &str,
        buffers: &[(Buffer, usize)],
        op: &std::cell::RefCell<HostOp<'g>>,
    ) -> Result<()> {
        let what = format!("host operation `{name}`");
        let mut values = Vec::with_capacity(buffers.len());
        for (b, len) in buffers {
            let bytes = match &gpu.backend {
                Backend::Native(_) => b.host(&what)?.read(0, 4 * *len as u64),
                Backend::Wgpu { .. } => {
                    let mut s = gpu.step(&what);
                    s.commands.push(Command::Readback {
                        src: b.clone(),
                        bytes: 4 * *len as u64,
                    });
                    s.readbacks = 1;
                    s.submit()?.into_bytes(0)
                }
            };
            values.push(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
        }
        (op.borrow_mut())(&mut values)?;
        for ((b, len), v) in buffers.iter().zip(&values) {
            if v.len() != *len {
                return Err(Error::shape(
                    what.clone(),
                    format!("left {} values in a tensor of {len}", v.len()),
                ));
            }
            let bytes: &[u8] = bytemuck::cast_slice(v);
            match &gpu.backend {
                Backend::Native(_) => b.host(&what)?.write(0, bytes),
                Backend::Wgpu { queue, .. } => {
                    gpu.scoped(&what, || queue.write_buffer(wb(b), 0, bytes))?
                }
            }
        }
        Ok(())
    }

    /// A wgpu step with host operations: the runs of commands between them
    /// submitted one after the other (sharing the step's parameter arena
    /// and readback numbering), each host operation run in between.
    fn submit_in_parts(self) -> Result<Readbacks> {
        let Step {
            gpu,
            label,
            commands,
            params,
            timestamps,
            started,
            ..
        } = self;
        let mut out = Readbacks::default();
        let mut part: Vec<Command<'g>> = Vec::new();
        let flush = |part: &mut Vec<Command<'g>>, out: &mut Readbacks| -> Result<()> {
            if part.is_empty() {
                return Ok(());
            }
            let readbacks = part
                .iter()
                .filter(|c| matches!(c, Command::Readback { .. }))
                .count();
            let s = Step {
                gpu,
                label: label.clone(),
                commands: std::mem::take(part),
                params: params.clone(),
                readbacks,
                timestamps,
                started,
                sync_bn: None,
            };
            let r = s.submit()?;
            out.data.extend(r.data);
            out.timings.extend(r.timings);
            Ok(())
        };
        for cmd in commands {
            match cmd {
                Command::Host { name, buffers, op } => {
                    flush(&mut part, &mut out)?;
                    let t0 = std::time::Instant::now();
                    Self::run_host(gpu, &name, &buffers, &op)?;
                    if timestamps {
                        out.timings.push((name, t0.elapsed().as_secs_f64() * 1e9));
                    }
                }
                other => part.push(other),
            }
        }
        flush(&mut part, &mut out)?;
        out.host_seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Number of dispatches recorded.
    pub fn dispatches(&self) -> usize {
        self.commands
            .iter()
            .filter(|c| matches!(c, Command::Dispatch { .. }))
            .count()
    }

    /// After the step's encoder failed validation (wgpu reports encoding
    /// errors when the encoder is finished), re-encodes each dispatch alone
    /// to find the kernel at fault. Costs nothing unless a step failed.
    fn diagnose(&self, device: &wgpu::Device, arena: &wgpu::Buffer, original: Error) -> Error {
        let gpu = self.gpu;
        for cmd in &self.commands {
            let Command::Dispatch { kernel, .. } = cmd else {
                continue;
            };
            let found = gpu.scoped(&kernel.name, || {
                let mut enc = device.create_command_encoder(&Default::default());
                encode_dispatch(gpu, &mut enc, cmd, arena, None);
                enc.finish()
            });
            if let Err(e) = found {
                return e;
            }
        }
        original
    }

    /// Encodes everything into one command encoder, submits once, waits
    /// for readbacks if any were asked for.
    pub fn submit(self) -> Result<Readbacks> {
        let gpu = self.gpu;
        let (device, queue) = match &gpu.backend {
            Backend::Native(_) => return self.submit_native(),
            Backend::Wgpu { device, queue } => (device, queue),
        };
        if self
            .commands
            .iter()
            .any(|c| matches!(c, Command::Host { .. }))
        {
            return self.submit_in_parts();
        }
        for cmd in &self.commands {
            for b in cmd.buffers() {
                b.wgpu(&format!("step `{}`", self.label))?;
            }
        }
        gpu.check_lost()?;
        // Holding the arena for the whole submit keeps steps from other
        // threads from overwriting parameters before this step runs.
        let mut arena = gpu.params.lock().unwrap();
        let needed = (self.params.len() as u64).max(PARAMS_SLOT);
        if arena.as_ref().is_none_or(|b| b.size() < needed) {
            let size = needed.next_power_of_two().max(64 * 1024);
            let buf = gpu.scoped("parameter arena", || {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("scorecl params"),
                    size,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })?;
            gpu.pool.count_created();
            *arena = Some(buf);
        }
        let arena_buf = arena.as_ref().unwrap().clone();
        if !self.params.is_empty() {
            queue.write_buffer(&arena_buf, 0, &self.params);
        }
        let n_dispatch = self.dispatches() as u32;
        let queries = if self.timestamps && n_dispatch > 0 {
            Some(device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("scorecl timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * n_dispatch,
            }))
        } else {
            None
        };
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some(&self.label),
        });
        let mut staging = Vec::new();
        let mut names = Vec::new();
        let mut i = 0;
        while i < self.commands.len() {
            let cmd = &self.commands[i];
            i += 1;
            match cmd {
                Command::Dispatch { kernel, .. } if queries.is_none() => {
                    // A run of dispatches shares one compute pass (wgpu
                    // orders them with the barriers their bindings need);
                    // a pass per dispatch only when timing each one.
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&kernel.name),
                        timestamp_writes: None,
                    });
                    record_dispatch(gpu, &mut pass, cmd, &arena_buf);
                    while let Some(next @ Command::Dispatch { .. }) = self.commands.get(i) {
                        record_dispatch(gpu, &mut pass, next, &arena_buf);
                        i += 1;
                    }
                }
                Command::Dispatch { kernel, .. } => {
                    let q = names.len() as u32;
                    names.push(kernel.name.clone());
                    let stamps = queries.as_ref().map(|qs| (qs, q));
                    encode_dispatch(gpu, &mut encoder, cmd, &arena_buf, stamps);
                }
                Command::Copy {
                    src,
                    src_off,
                    dst,
                    dst_off,
                    bytes,
                } => {
                    encoder.copy_buffer_to_buffer(wb(src), *src_off, wb(dst), *dst_off, *bytes);
                }
                Command::Clear { dst, bytes } => {
                    encoder.clear_buffer(wb(dst), 0, Some(*bytes));
                }
                Command::Host { .. } => unreachable!("steps with host operations submit in parts"),
                Command::Readback { src, bytes } => {
                    let s = gpu.staging(*bytes)?;
                    encoder.copy_buffer_to_buffer(wb(src), 0, &s, 0, *bytes);
                    staging.push((s, *bytes));
                }
            }
        }
        let mut stamps = None;
        if let Some(qs) = &queries {
            let bytes = 16 * n_dispatch as u64;
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("scorecl timestamp resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            encoder.resolve_query_set(qs, 0..2 * n_dispatch, &resolve, 0);
            let s = gpu.staging(bytes)?;
            encoder.copy_buffer_to_buffer(&resolve, 0, &s, 0, bytes);
            stamps = Some((s, bytes));
        }
        let label = format!("step `{}`", self.label);
        let commands = match gpu.scoped(&label, || encoder.finish()) {
            Ok(c) => c,
            Err(e) => return Err(self.diagnose(device, &arena_buf, e)),
        };
        gpu.scoped(&label, || queue.submit([commands]))?;
        drop(arena);
        let mut out = Readbacks {
            host_seconds: self.started.elapsed().as_secs_f64(),
            ..Default::default()
        };
        if staging.is_empty() && stamps.is_none() {
            return Ok(out);
        }
        let mut maps: Vec<&(wgpu::Buffer, u64)> = staging.iter().collect();
        if let Some(s) = &stamps {
            maps.push(s);
        }
        for (b, bytes) in &maps {
            b.slice(0..*bytes).map_async(wgpu::MapMode::Read, |_| {});
        }
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback {
                what: label.clone(),
                message: e.to_string(),
            })?;
        gpu.check_lost()?;
        let read = |b: &wgpu::Buffer, bytes: u64| -> Result<Vec<u8>> {
            let v = b
                .slice(0..bytes)
                .get_mapped_range()
                .map_err(|e| GpuError::Readback {
                    what: label.clone(),
                    message: e.to_string(),
                })?;
            let data = v.to_vec();
            drop(v);
            b.unmap();
            Ok(data)
        };
        for (b, bytes) in staging {
            out.data.push(read(&b, bytes)?);
            gpu.return_staging(b);
        }
        if let Some((b, bytes)) = stamps {
            let t: Vec<u64> = bytemuck::pod_collect_to_vec(&read(&b, bytes)?);
            gpu.return_staging(b);
            let period = queue.get_timestamp_period() as f64;
            out.timings = names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, t[2 * i + 1].saturating_sub(t[2 * i]) as f64 * period))
                .collect();
        }
        Ok(out)
    }

    /// The native CPU device's submit: every command executed in order by
    /// the kernels' Rust twins; with timestamps, each dispatch timed by the
    /// host clock. The commands between two host operations run as one job
    /// on a thread of rayon's pool, which takes part in each kernel's
    /// parallel work and runs the small kernels itself, instead of this
    /// thread handing every kernel to the pool and sleeping until it is
    /// done. The work is split as before (by the pool's thread count), so
    /// the results are the same bits.
    fn submit_native(self) -> Result<Readbacks> {
        let label = format!("step `{}`", self.label);
        for cmd in &self.commands {
            for b in cmd.buffers() {
                b.host(&label)?;
            }
        }
        let mut out = Readbacks::default();
        let mut at = 0;
        while at < self.commands.len() {
            if let Command::Host { name, buffers, op } = &self.commands[at] {
                let t0 = std::time::Instant::now();
                Self::run_host(self.gpu, name, buffers, op)?;
                if self.timestamps {
                    out.timings
                        .push((name.clone(), t0.elapsed().as_secs_f64() * 1e9));
                }
                at += 1;
                continue;
            }
            let end = self.commands[at..]
                .iter()
                .position(|c| matches!(c, Command::Host { .. }))
                .map_or(self.commands.len(), |p| at + p);
            let segment = NativeSegment {
                commands: &self.commands[at..end],
                params: &self.params,
                timestamps: self.timestamps,
                label: &label,
            };
            let out = &mut out;
            rayon::scope(move |_| segment.run(out))?;
            at = end;
        }
        out.host_seconds = self.started.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// Commands of a native step with no host operation among them, run as
/// one job on a thread of rayon's pool.
struct NativeSegment<'a, 'g> {
    commands: &'a [Command<'g>],
    params: &'a [u8],
    timestamps: bool,
    label: &'a str,
}

// SAFETY: a segment is cut between host operations (`submit_native`), so
// it holds no `Command::Host`, the only command with data bound to the
// recording thread (its closure); the others hold kernels, buffers
// (`Arc`s of host memory) and numbers, and the step waits for the job.
unsafe impl Send for NativeSegment<'_, '_> {}

impl NativeSegment<'_, '_> {
    fn run(self, out: &mut Readbacks) -> Result<()> {
        let label = self.label;
        for cmd in self.commands {
            match cmd {
                Command::Dispatch {
                    kernel,
                    params,
                    buffers,
                    groups,
                } => {
                    let p = match params {
                        Some(off) => {
                            &self.params[*off as usize..*off as usize + PARAMS_SLOT as usize]
                        }
                        None => &[][..],
                    };
                    let t0 = std::time::Instant::now();
                    crate::native::dispatch(kernel, p, buffers, *groups)?;
                    if self.timestamps {
                        out.timings
                            .push((kernel.name.clone(), t0.elapsed().as_secs_f64() * 1e9));
                    }
                }
                Command::Copy {
                    src,
                    src_off,
                    dst,
                    dst_off,
                    bytes,
                } => {
                    let (s, d) = (src.host(label)?, dst.host(label)?);
                    crate::native::copy(s, *src_off, d, *dst_off, *bytes, label)?;
                }
                Command::Clear { dst, bytes } => {
                    dst.host(label)?.zero(0, *bytes);
                }
                Command::Readback { src, bytes } => {
                    out.data.push(src.host(label)?.read(0, *bytes));
                }
                Command::Host { name, .. } => {
                    return Err(crate::error::GpuError::Kernel {
                        kernel: name.clone(),
                        message: "a host operation inside a native segment".into(),
                    }
                    .into())
                }
            }
        }
        Ok(())
    }
}

/// Records one dispatch command in a compute pass of its own (with its
/// timestamps when profiling).
fn encode_dispatch(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    cmd: &Command,
    arena: &wgpu::Buffer,
    stamps: Option<(&wgpu::QuerySet, u32)>,
) {
    let Command::Dispatch { kernel, .. } = cmd else {
        return;
    };
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(&kernel.name),
        timestamp_writes: stamps.map(|(qs, q)| wgpu::ComputePassTimestampWrites {
            query_set: qs,
            beginning_of_pass_write_index: Some(2 * q),
            end_of_pass_write_index: Some(2 * q + 1),
        }),
    });
    record_dispatch(gpu, &mut pass, cmd, arena);
}

/// Records one dispatch command into `pass`: its bind group (parameters
/// slot and storage buffers in binding order), pipeline and workgroups.
fn record_dispatch(
    gpu: &Gpu,
    pass: &mut wgpu::ComputePass<'_>,
    cmd: &Command,
    arena: &wgpu::Buffer,
) {
    let Command::Dispatch {
        kernel,
        params,
        buffers,
        groups,
    } = cmd
    else {
        return;
    };
    pass.set_pipeline(kernel.pipeline());
    let offsets: Vec<u32> = params.iter().copied().collect();
    // Bind groups are cached by (kernel, parameter arena, buffers): a
    // training step binds the same workspace buffers every time, so after
    // the first step none is created.
    let key = BindKey {
        kernel: Arc::as_ptr(kernel) as usize,
        arena: arena.clone(),
        buffers: buffers.clone(),
    };
    let mut cache = gpu.bind_groups.lock().unwrap();
    if cache.len() > BIND_CACHE_MAX {
        cache.clear();
    }
    let Backend::Wgpu { device, .. } = &gpu.backend else {
        return;
    };
    let bg = cache
        .entry(key)
        .or_insert_with(|| create_bind_group(device, kernel, buffers, arena));
    pass.set_bind_group(0, &*bg, &offsets);
    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
}

/// Most bind groups kept (a model's steps need a few thousand at most).
const BIND_CACHE_MAX: usize = 16_384;

/// What identifies a bind group: the kernel (its `Arc` in the kernel
/// cache), the parameter arena and the storage buffers with their sizes.
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    kernel: usize,
    arena: wgpu::Buffer,
    buffers: Vec<(Buffer, u64)>,
}

fn create_bind_group(
    device: &wgpu::Device,
    kernel: &Kernel,
    buffers: &[(Buffer, u64)],
    arena: &wgpu::Buffer,
) -> wgpu::BindGroup {
    let mut entries = Vec::with_capacity(kernel.bindings.len());
    let mut storage = buffers.iter();
    for (binding, kind) in &kernel.bindings {
        let resource = match kind {
            Binding::Params => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: arena,
                offset: 0,
                size: std::num::NonZeroU64::new(PARAMS_SLOT),
            }),
            _ => {
                let (b, bytes) = storage.next().expect("buffer count checked at dispatch");
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: wb(b),
                    offset: 0,
                    size: std::num::NonZeroU64::new(*bytes),
                })
            }
        };
        entries.push(wgpu::BindGroupEntry {
            binding: *binding,
            resource,
        });
    }
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(&kernel.name),
        layout: kernel.layout(),
        entries: &entries,
    })
}

//! Tensors: a storage buffer (a wgpu buffer, or host memory on the native
//! CPU device) with a shape and a dtype, drawn from a pool of buffers keyed
//! by byte size so that a training step allocates nothing after its first
//! run, and returned to it on drop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, GpuError, Result};
use crate::gpu::{Backend, Gpu};
use crate::native::HostBuffer;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer.
    U32,
    /// 16-bit float (two per 32-bit word; needs shader-f16 to compute on).
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);
const STAGING: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// A device buffer: wgpu's, or host memory of the native CPU device.
/// Equal (and hashed) by identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Buffer {
    /// A wgpu buffer.
    Wgpu(wgpu::Buffer),
    /// Host memory (the native CPU device).
    Host(crate::native::HostRef),
}

impl Buffer {
    /// Its size in bytes.
    pub(crate) fn size(&self) -> u64 {
        match self {
            Buffer::Wgpu(b) => b.size(),
            Buffer::Host(h) => h.size(),
        }
    }

    /// The wgpu buffer, or an error naming `what` for host memory (a
    /// tensor of the native CPU device given to a wgpu device).
    pub(crate) fn wgpu(&self, what: &str) -> Result<&wgpu::Buffer> {
        match self {
            Buffer::Wgpu(b) => Ok(b),
            Buffer::Host(_) => Err(Error::shape(
                what,
                "a tensor of the native CPU device given to a wgpu device",
            )),
        }
    }

    /// The host memory, or an error naming `what` for a wgpu buffer.
    pub(crate) fn host(&self, what: &str) -> Result<&HostBuffer> {
        match self {
            Buffer::Host(h) => Ok(h),
            Buffer::Wgpu(_) => Err(Error::shape(
                what,
                "a tensor of a wgpu device given to the native CPU device",
            )),
        }
    }
}

/// Free buffers by (byte size, usage).
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<HashMap<(u64, wgpu::BufferUsages), Vec<Buffer>>>,
    created: AtomicU64,
    /// Bytes of every buffer the pool has created (it never frees them:
    /// this is scorecl's device-memory footprint).
    allocated: AtomicU64,
    /// Bytes held by live tensors and readbacks now, and the most ever.
    in_use: AtomicU64,
    peak_in_use: AtomicU64,
}

/// Device memory held by scorecl's buffers (the pool's counters; the
/// parameter arena and timestamp buffers, a few kB, are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MemoryStats {
    /// Bytes of all buffers created so far (pooled or in use): the peak
    /// footprint, since pooled buffers are kept for reuse.
    pub allocated_bytes: u64,
    /// Bytes in use by live tensors and readbacks now.
    pub in_use_bytes: u64,
    /// The most bytes ever in use at once.
    pub peak_in_use_bytes: u64,
}

impl Pool {
    pub(crate) fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    pub(crate) fn memory(&self) -> MemoryStats {
        MemoryStats {
            allocated_bytes: self.allocated.load(Ordering::Relaxed),
            in_use_bytes: self.in_use.load(Ordering::Relaxed),
            peak_in_use_bytes: self.peak_in_use.load(Ordering::Relaxed),
        }
    }

    /// Restarts the peak at what is in use now.
    pub(crate) fn reset_peak(&self) {
        self.peak_in_use
            .store(self.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn taken(&self, size: u64) {
        let now = self.in_use.fetch_add(size, Ordering::Relaxed) + size;
        self.peak_in_use.fetch_max(now, Ordering::Relaxed);
    }

    /// Counts an allocation made outside the pool (the parameter arena).
    pub(crate) fn count_created(&self) {
        self.created.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self, gpu: &Gpu, size: u64, usage: wgpu::BufferUsages, label: &str) -> Result<Buffer> {
        if let Some(b) = self
            .free
            .lock()
            .unwrap()
            .get_mut(&(size, usage))
            .and_then(|v| v.pop())
        {
            self.taken(size);
            return Ok(b);
        }
        let limit = gpu.caps.limits.max_buffer_size;
        if size > limit {
            return Err(GpuError::Limit {
                what: format!("buffer `{label}`"),
                message: format!("{size} bytes requested, max_buffer_size is {limit}"),
            }
            .into());
        }
        let b = match &gpu.backend {
            Backend::Wgpu { device, .. } => Buffer::Wgpu(gpu.scoped(label, || {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage,
                    mapped_at_creation: false,
                })
            })?),
            Backend::Native(_) => Buffer::Host(HostBuffer::alloc(size, label)?),
        };
        self.created.fetch_add(1, Ordering::Relaxed);
        self.allocated.fetch_add(size, Ordering::Relaxed);
        self.taken(size);
        Ok(b)
    }

    pub(crate) fn give(&self, b: Buffer, usage: wgpu::BufferUsages) {
        let size = b.size();
        self.in_use.fetch_sub(size, Ordering::Relaxed);
        self.free
            .lock()
            .unwrap()
            .entry((size, usage))
            .or_default()
            .push(b);
    }
}

/// Bytes a tensor of `len` elements occupies: at least 16, a multiple of
/// 16, so that kernels may view any tensor as an array of vec4.
fn byte_len(len: usize, dtype: DType) -> u64 {
    (len * dtype.size()).max(16).div_ceil(16) as u64 * 16
}

/// A tensor on a device. Dropping it returns its buffer to the pool.
pub struct Tensor {
    buf: Option<Buffer>,
    shape: Vec<usize>,
    dtype: DType,
    pool: Arc<Pool>,
    /// False for a [`Tensor::view`], which must not return the buffer.
    owned: bool,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.shape, self.dtype)
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            if self.owned {
                self.pool.give(b, STORAGE);
            }
        }
    }
}

impl Tensor {
    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Its element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes bound for it: the data rounded up to 16 bytes.
    pub fn bytes(&self) -> u64 {
        byte_len(self.len(), self.dtype)
    }

    /// The buffer.
    pub(crate) fn buffer(&self) -> &Buffer {
        self.buf
            .as_ref()
            .expect("tensor buffer is present until drop")
    }

    /// The first `len` `dtype` elements of the same buffer (at most as
    /// many as fit in its bytes), for scratch memory used with one type by
    /// some kernels and another by others. The view does not own the
    /// buffer: it must not outlive `self` (crate-private for that reason).
    pub(crate) fn view(&self, dtype: DType, len: usize) -> Result<Tensor> {
        let fits = self.buffer().size() as usize / dtype.size();
        if len > fits {
            return Err(Error::shape(
                "view",
                format!("{len} {dtype:?} elements in {self:?} ({fits} fit)"),
            ));
        }
        Ok(Tensor {
            buf: self.buf.clone(),
            shape: vec![len],
            dtype,
            pool: self.pool.clone(),
            owned: false,
        })
    }

    /// Reinterprets the same elements with another shape.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "{:?} ({} elements) to {shape:?} ({n})",
                    self.shape,
                    self.len()
                ),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// Checks the shape, naming `what` if it differs.
    pub fn expect_shape(&self, what: &str, shape: &[usize]) -> Result<()> {
        if self.shape == shape {
            Ok(())
        } else {
            Err(Error::shape(
                what,
                format!("shape {:?}, expected {shape:?}", self.shape),
            ))
        }
    }

    /// Checks that the tensor holds at least `len` elements.
    pub fn expect_len_at_least(&self, what: &str, len: usize) -> Result<()> {
        if self.len() >= len {
            Ok(())
        } else {
            Err(Error::shape(
                what,
                format!(
                    "{} elements (shape {:?}), needs {len}",
                    self.len(),
                    self.shape
                ),
            ))
        }
    }

    /// Checks the element count, naming `what` if it differs.
    pub fn expect_len(&self, what: &str, len: usize) -> Result<()> {
        if self.len() == len {
            Ok(())
        } else {
            Err(Error::shape(
                what,
                format!(
                    "{} elements (shape {:?}), expected {len}",
                    self.len(),
                    self.shape
                ),
            ))
        }
    }
}

impl Gpu {
    /// An uninitialised tensor from the pool.
    pub fn tensor(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        let buf = self
            .pool
            .take(self, byte_len(len, dtype), STORAGE, "tensor")?;
        Ok(Tensor {
            buf: Some(buf),
            shape: shape.to_vec(),
            dtype,
            pool: self.pool.clone(),
            owned: true,
        })
    }

    /// An f16 tensor holding `data` rounded to the nearest f16 (ties to
    /// even).
    pub fn upload_f16(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let t = self.tensor(shape, DType::F16)?;
        t.expect_len("upload", data.len())?;
        let h: Vec<u16> = data
            .iter()
            .map(|v| half::f16::from_f32(*v).to_bits())
            .collect();
        self.write(&t, bytemuck::cast_slice(&h))?;
        Ok(t)
    }

    /// Reads an f16 tensor back as f32 (exact; waits for the GPU).
    pub fn download_f16(&self, t: &Tensor) -> Result<Vec<f32>> {
        if t.dtype != DType::F16 {
            return Err(Error::shape("download_f16", format!("{t:?} is not f16")));
        }
        let bytes = self.download_bytes(t)?;
        Ok(bytes[..t.len() * 2]
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect())
    }

    /// An f32 tensor holding `data`.
    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let t = self.tensor(shape, DType::F32)?;
        t.expect_len("upload", data.len())?;
        self.write(&t, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// A u32 tensor holding `data`.
    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        let t = self.tensor(shape, DType::U32)?;
        t.expect_len("upload", data.len())?;
        self.write(&t, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// An f32 tensor of zeros.
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensor(shape, DType::F32)?;
        let zeros = vec![0u8; t.bytes() as usize];
        self.write(&t, &zeros)?;
        Ok(t)
    }

    /// Overwrites a tensor's contents (staged; visible to the next submit).
    pub fn write(&self, t: &Tensor, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > t.buffer().size() {
            return Err(Error::shape(
                "write",
                format!("{} bytes into {:?}", bytes.len(), t),
            ));
        }
        let queue = match &self.backend {
            Backend::Native(_) => {
                t.buffer().host("write")?.write(0, bytes);
                return Ok(());
            }
            Backend::Wgpu { queue, .. } => queue,
        };
        let mut padded;
        let data = if bytes.len() % 4 != 0 {
            padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4) * 4, 0);
            &padded[..]
        } else {
            bytes
        };
        let buf = t.buffer().wgpu("write")?;
        self.scoped("upload", || queue.write_buffer(buf, 0, data))
    }

    /// Reads an f32 tensor back (waits for the GPU).
    pub fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        if t.dtype != DType::F32 {
            return Err(Error::shape("download", format!("{t:?} is not f32")));
        }
        Ok(bytemuck::cast_slice(&self.download_bytes(t)?[..t.len() * 4]).to_vec())
    }

    /// Reads a u32 tensor back (waits for the GPU).
    pub fn download_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        if t.dtype != DType::U32 {
            return Err(Error::shape("download_u32", format!("{t:?} is not u32")));
        }
        Ok(bytemuck::cast_slice(&self.download_bytes(t)?[..t.len() * 4]).to_vec())
    }

    /// Reads a tensor's bytes back (waits for the GPU).
    pub fn download_bytes(&self, t: &Tensor) -> Result<Vec<u8>> {
        let mut step = self.step("download");
        let i = step.readback(t);
        let out = step.submit()?;
        Ok(out.into_bytes(i))
    }

    /// Device memory held by scorecl's buffers.
    pub fn memory(&self) -> MemoryStats {
        self.pool.memory()
    }

    /// Restarts [`MemoryStats::peak_in_use_bytes`] at the bytes in use now.
    pub fn reset_memory_peak(&self) {
        self.pool.reset_peak()
    }

    pub(crate) fn staging(&self, size: u64) -> Result<wgpu::Buffer> {
        match self.pool.take(self, size, STAGING, "readback")? {
            Buffer::Wgpu(b) => Ok(b),
            Buffer::Host(_) => Err(Error::shape(
                "readback",
                "staging buffers exist on wgpu devices only",
            )),
        }
    }

    pub(crate) fn return_staging(&self, b: wgpu::Buffer) {
        self.pool.give(Buffer::Wgpu(b), STAGING);
    }
}

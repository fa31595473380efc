//! Errors of the GPU host. Every variant names what failed: the adapter,
//! the kernel, the tensor.

/// Result type of the host.
pub type Result<T> = std::result::Result<T, GpuError>;

/// What can go wrong on the GPU side.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter at all.
    #[error(
        "no GPU adapter found (backends tried: {backends}). Install a driver: on Debian/Ubuntu \
         `sudo apt install mesa-vulkan-drivers` gives the CPU Vulkan driver (lavapipe); \
         or choose other backends with WGPU_BACKEND (vulkan, metal, dx12, gl)"
    )]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
    },
    /// `--device` / `--adapter` / `SCORECL_DEVICE` / `SCORECL_ADAPTER`
    /// matched nothing.
    #[error(
        "no adapter name contains `{wanted}`; available: {available}, and `cpu` (the native \
         CPU device)"
    )]
    AdapterNotFound {
        /// The requested substring.
        wanted: String,
        /// The adapters that exist.
        available: String,
    },
    /// The adapter refused the device request.
    #[error("requesting a device on `{adapter}` failed: {message}")]
    Device {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// A validation or internal error, attributed to a kernel.
    #[error("kernel `{kernel}`: {message}")]
    Kernel {
        /// Kernel (family::entry) or operation name.
        kernel: String,
        /// wgpu's message.
        message: String,
    },
    /// Out of GPU memory, attributed to a kernel or allocation.
    #[error("out of GPU memory in `{kernel}`: {message}")]
    OutOfMemory {
        /// Kernel or allocation name.
        kernel: String,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// A tensor has the wrong shape or type for an operation.
    #[error("`{what}`: {message}")]
    Shape {
        /// The operation and argument.
        what: String,
        /// What was expected and what was given.
        message: String,
    },
    /// Reading a buffer back failed.
    #[error("reading back `{what}` failed: {message}")]
    Readback {
        /// The tensor.
        what: String,
        /// wgpu's message.
        message: String,
    },
    /// A request beyond what the adapter allows.
    #[error("`{what}` exceeds the adapter's limit: {message}")]
    Limit {
        /// What was asked.
        what: String,
        /// Limit and request.
        message: String,
    },
    /// A file could not be read or written, or holds the wrong content.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An error of the core maths (shapes, configs).
    #[error(transparent)]
    Core(#[from] scorecl_core::CoreError),
}

impl GpuError {
    pub(crate) fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        GpuError::File {
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn shape(what: impl Into<String>, message: impl Into<String>) -> Self {
        GpuError::Shape {
            what: what.into(),
            message: message.into(),
        }
    }

    /// Maps a wgpu error caught by an error scope to one naming `kernel`.
    pub(crate) fn from_wgpu(kernel: &str, e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory {
                kernel: kernel.to_string(),
                message: e.to_string(),
            },
            wgpu::Error::Validation { description, .. } => GpuError::Kernel {
                kernel: kernel.to_string(),
                message: description,
            },
            wgpu::Error::Internal { description, .. } => GpuError::Kernel {
                kernel: kernel.to_string(),
                message: description,
            },
        }
    }
}

//! Errors of the host, in three kinds that each name what failed:
//! [`GpuError`] (the adapter, the kernel, the tensor), a file
//! ([`Error::File`]: the path) and a configuration value ([`ConfigError`]:
//! the key), and in a data-parallel run a peer ([`Error::Peer`]: the
//! rank). [`Error`] is their union, the error of every host function.

/// Result type of the host.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong in the host: on the device, in a file, in a
/// configuration value or in the core's maths.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device side failed (adapter, kernel, memory, tensor shape).
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A file could not be read or written, or holds the wrong content.
    #[error("{path}: {message}")]
    File {
        /// The file (or folder).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A configuration value (a config key, a command-line flag, an
    /// environment variable) is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An error of the core maths.
    #[error(transparent)]
    Core(#[from] scorecl_core::CoreError),
    /// Another rank of a data-parallel run failed, left or disagrees
    /// (`crate::dist`): the rank and what happened.
    #[error("rank {rank}: {message}")]
    Peer {
        /// The rank at fault (or this rank, when its transport failed).
        rank: usize,
        /// What happened.
        message: String,
    },
}

/// A configuration error: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted key (`optimizer.lr`), flag (`--weightings`), environment
    /// variable (`SCORECL_GEMM`), or the file for parse errors.
    pub key: String,
    /// What is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error of `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Error {
    /// `path` is missing, unreadable or holds the wrong content.
    pub(crate) fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        Error::File {
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    /// A tensor's shape or type does not fit the operation `what`.
    pub(crate) fn shape(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Gpu(GpuError::Shape {
            what: what.into(),
            message: message.into(),
        })
    }

    /// The configuration value `key` is wrong.
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config(ConfigError::new(key, message))
    }
}

/// What can go wrong on the device side.
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
}

impl GpuError {
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

//! Weights as safetensors: every parameter and state tensor as f32 and every
//! counter as an i64 scalar, under the model's stable names, with
//! `{"format": "pt"}` metadata, so that `safetensors.torch.load_file` and
//! `load_state_dict` read a scorecl checkpoint and scorecl reads PyTorch's.
//! Files are written to a temporary name and renamed, so a crash never
//! leaves half a checkpoint. Writers return each file's [`Digest`] (length
//! and SHA-256 of the bytes written) for `state.json`; loading refuses
//! non-finite values, naming the tensor.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::params::ParamStore;

/// Length and SHA-256 (lower-case hex) of a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Length in bytes.
    pub bytes: u64,
    /// SHA-256, 64 hex digits.
    pub sha256: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(bytes);
        Digest {
            bytes: bytes.len() as u64,
            sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// Writes `store` to `path` (atomically: temporary file, then rename).
pub fn save(gpu: &Gpu, store: &ParamStore, path: &Path) -> Result<()> {
    save_with(gpu, store, path, &[]).map(|_| ())
}

/// [`save`] with extra metadata entries (besides `format: pt`).
pub fn save_with(
    gpu: &Gpu,
    store: &ParamStore,
    path: &Path,
    meta: &[(&str, String)],
) -> Result<Digest> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for p in &store.params {
        let v = gpu.download(&p.value)?;
        owned.push((
            p.name.clone(),
            Dtype::F32,
            p.shape.clone(),
            bytemuck::cast_slice(&v[..p.value.len()]).to_vec(),
        ));
    }
    for s in &store.states {
        let v = gpu.download(&s.value)?;
        owned.push((
            s.name.clone(),
            Dtype::F32,
            s.shape.clone(),
            bytemuck::cast_slice(&v[..s.value.len()]).to_vec(),
        ));
    }
    for c in &store.counters {
        owned.push((
            c.name.clone(),
            Dtype::I64,
            vec![],
            c.value.load(Ordering::Relaxed).to_le_bytes().to_vec(),
        ));
    }
    write_tensors(path, &owned, meta)
}

/// A named tensor as raw little-endian bytes.
pub type RawTensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Writes raw tensors with `format: pt` and `meta` as safetensors,
/// atomically; returns the digest of the bytes written.
pub fn write_tensors(
    path: &Path,
    tensors: &[RawTensor],
    meta: &[(&str, String)],
) -> Result<Digest> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::file(path, format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    for (k, v) in meta {
        metadata.insert(k.to_string(), v.clone());
    }
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::file(path, e.to_string()))?;
    write_atomic(path, &bytes)?;
    Ok(Digest::of(&bytes))
}

/// Refuses non-finite entries of tensor `name` of `path`.
pub fn check_finite(path: &Path, name: &str, values: &[f32]) -> Result<()> {
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 {
        return Ok(());
    }
    let first = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
    Err(Error::file(
        path,
        format!(
            "tensor `{name}` holds {bad} non-finite value(s) (the first, {}, at index {first}): \
             the checkpoint is damaged",
            values[first]
        ),
    ))
}

/// Reads every tensor of a safetensors file as f32 (name → (shape,
/// values); I64 counters converted) and its metadata. Errors name the file
/// and the tensor; non-finite values are refused.
#[allow(clippy::type_complexity)]
pub fn read_f32_tensors(
    path: &Path,
) -> Result<(
    HashMap<String, (Vec<usize>, Vec<f32>)>,
    HashMap<String, String>,
)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, t) in st.tensors() {
        let values = match t.dtype() {
            Dtype::F32 => {
                let v: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
                check_finite(path, &name, &v)?;
                v
            }
            Dtype::I64 => bytemuck::pod_collect_to_vec::<u8, i64>(t.data())
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            dt => {
                return Err(Error::file(
                    path,
                    format!("tensor `{name}` is {dt:?}, expected F32 or I64"),
                ))
            }
        };
        out.insert(name, (t.shape().to_vec(), values));
    }
    Ok((out, metadata_of(path, &bytes)?))
}

fn metadata_of(path: &Path, bytes: &[u8]) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::file(path, "not a file name"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("writing failed: {e}"))
    })
}

/// Reads `path` into `store`: every parameter, state and counter must be
/// present with its shape and finite; tensors the store does not have are
/// an error, except torchvision's classifier (`fc.*`), which the encoder
/// drops.
pub fn load(gpu: &Gpu, store: &ParamStore, path: &Path) -> Result<()> {
    load_with(gpu, store, path).map(|_| ())
}

/// [`load`], returning the file's metadata.
pub fn load_with(gpu: &Gpu, store: &ParamStore, path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let get = |name: &str, shape: &[usize]| -> Result<Vec<u8>> {
        let t = st
            .tensor(name)
            .map_err(|_| Error::file(path, format!("missing tensor `{name}`")))?;
        if t.dtype() != Dtype::F32 {
            return Err(Error::file(
                path,
                format!("tensor `{name}` is {:?}, expected F32", t.dtype()),
            ));
        }
        if t.shape() != shape {
            return Err(Error::file(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.shape()
                ),
            ));
        }
        let data = t.data().to_vec();
        check_finite(path, name, &bytemuck::pod_collect_to_vec::<u8, f32>(&data))?;
        Ok(data)
    };
    let mut known: Vec<&str> = Vec::new();
    for p in &store.params {
        gpu.write(&p.value, &get(&p.name, &p.shape)?)?;
        known.push(&p.name);
    }
    for s in &store.states {
        gpu.write(&s.value, &get(&s.name, &s.shape)?)?;
        known.push(&s.name);
    }
    for c in &store.counters {
        let t = st
            .tensor(&c.name)
            .map_err(|_| Error::file(path, format!("missing tensor `{}`", c.name)))?;
        let v = match (t.dtype(), t.data().len()) {
            (Dtype::I64, 8) => i64::from_le_bytes(t.data().try_into().unwrap()),
            (dt, _) => {
                return Err(Error::file(
                    path,
                    format!("tensor `{}` is {dt:?}, expected an I64 scalar", c.name),
                ))
            }
        };
        c.value.store(v, Ordering::Relaxed);
        known.push(&c.name);
    }
    let extra: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !known.contains(n) && !n.starts_with("fc."))
        .map(String::from)
        .collect();
    if !extra.is_empty() {
        return Err(Error::file(
            path,
            format!("tensors the model does not have: {}", extra.join(", ")),
        ));
    }
    metadata_of(path, &bytes)
}

//! Safetensors checkpoints: a round trip restores every tensor and counter,
//! a torchvision state dict (with its `fc.*` head) loads by name, and every
//! bad file is an error naming the file and the tensor, never a panic.
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use scorecl_host::nn::{checkpoint, ResNet, ResNetConfig, Stem};
use scorecl_host::Gpu;

/// (name, dtype, shape, bytes) of one tensor in a file.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);
/// An edit of a file's tensors.
type Edit = Box<dyn Fn(&mut Vec<Entry>)>;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scorecl-ckpt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small(gpu: &Gpu, seed: u64) -> ResNet {
    ResNet::new(
        gpu,
        ResNetConfig::resnet18(4, Stem::Cifar { padding: 1 }),
        seed,
    )
    .unwrap()
}

fn values(gpu: &Gpu, m: &ResNet) -> Vec<Vec<f32>> {
    let s = &m.store;
    s.params
        .iter()
        .map(|p| &p.value)
        .chain(s.states.iter().map(|t| &t.value))
        .map(|t| gpu.download(t).unwrap()[..t.len()].to_vec())
        .collect()
}

#[test]
fn round_trip_restores_everything() {
    let Some(gpu) = common::gpu() else { return };
    let d = dir("rt");
    let a = small(gpu, 1);
    a.store.tick(0);
    a.store.tick(0);
    let path = d.join("a.safetensors");
    checkpoint::save(gpu, &a.store, &path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    let b = small(gpu, 2);
    assert_ne!(values(gpu, &a), values(gpu, &b));
    checkpoint::load(gpu, &b.store, &path).unwrap();
    assert_eq!(values(gpu, &a), values(gpu, &b));
    assert_eq!(b.store.counters[0].value.load(Ordering::Relaxed), 2);
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("conv1.weight").unwrap().shape(), &[4, 3, 3, 3]);
    assert_eq!(
        st.tensor("bn1.num_batches_tracked").unwrap().dtype(),
        Dtype::I64
    );
    let _ = std::fs::remove_dir_all(&d);
}

fn write(path: &Path, tensors: &[Entry]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        path,
        safetensors::serialize(views, Some(HashMap::new())).unwrap(),
    )
    .unwrap();
}

/// The fixture's torchvision weights, renamed to a plain state dict.
fn torchvision_state() -> Vec<Entry> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/resnet/cifar_w8.safetensors");
    let bytes = std::fs::read(p).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .names()
        .into_iter()
        .filter_map(|n| {
            let plain = n.strip_prefix("param.")?;
            let t = st.tensor(n).unwrap();
            Some((
                plain.to_string(),
                t.dtype(),
                t.shape().to_vec(),
                t.data().to_vec(),
            ))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn a_torchvision_state_dict_loads_by_name() {
    let Some(gpu) = common::gpu() else { return };
    let d = dir("tv");
    let mut state = torchvision_state();
    // torchvision's classifier, which the encoder does not have.
    state.push((
        "fc.weight".into(),
        Dtype::F32,
        vec![10, 64],
        vec![0u8; 10 * 64 * 4],
    ));
    state.push(("fc.bias".into(), Dtype::F32, vec![10], vec![0u8; 40]));
    let path = d.join("tv.safetensors");
    write(&path, &state);
    let m = ResNet::new(
        gpu,
        ResNetConfig::resnet18(8, Stem::Cifar { padding: 1 }),
        0,
    )
    .unwrap();
    checkpoint::load(gpu, &m.store, &path).unwrap();
    let w = m.store.find("layer3.1.conv2.weight").unwrap();
    let want = &state
        .iter()
        .find(|t| t.0 == "layer3.1.conv2.weight")
        .unwrap()
        .3;
    let got = gpu.download(&w.value).unwrap();
    assert_eq!(
        bytemuck::cast_slice::<f32, u8>(&got[..w.value.len()]),
        &want[..]
    );
    assert_eq!(m.store.counters[0].value.load(Ordering::Relaxed), 3);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_files_are_named() {
    let Some(gpu) = common::gpu() else { return };
    let d = dir("bad");
    let m = ResNet::new(
        gpu,
        ResNetConfig::resnet18(8, Stem::Cifar { padding: 1 }),
        0,
    )
    .unwrap();
    let err = |path: &Path| {
        checkpoint::load(gpu, &m.store, path)
            .unwrap_err()
            .to_string()
    };
    let missing_file = d.join("nowhere.safetensors");
    assert!(err(&missing_file).contains("nowhere.safetensors"));
    let garbage = d.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file at all").unwrap();
    let e = err(&garbage);
    assert!(
        e.contains("garbage.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "missing",
            Box::new(|s| s.retain(|t| t.0 != "layer2.0.bn2.running_var")),
            "missing tensor `layer2.0.bn2.running_var`",
        ),
        (
            "shape",
            Box::new(|s| {
                let t = s.iter_mut().find(|t| t.0 == "conv1.weight").unwrap();
                t.2 = vec![8, 27];
            }),
            "`conv1.weight` has shape [8, 27]",
        ),
        (
            "dtype",
            Box::new(|s| {
                let t = s.iter_mut().find(|t| t.0 == "bn1.bias").unwrap();
                t.1 = Dtype::I32;
            }),
            "`bn1.bias` is I32",
        ),
        (
            "extra",
            Box::new(|s| {
                s.push((
                    "layer5.0.conv1.weight".into(),
                    Dtype::F32,
                    vec![1],
                    vec![0; 4],
                ))
            }),
            "layer5.0.conv1.weight",
        ),
        (
            "counter",
            Box::new(|s| {
                let t = s
                    .iter_mut()
                    .find(|t| t.0 == "bn1.num_batches_tracked")
                    .unwrap();
                t.1 = Dtype::F32;
                t.3 = vec![0; 4];
            }),
            "bn1.num_batches_tracked",
        ),
    ];
    for (tag, edit, want) in cases {
        let mut state = torchvision_state();
        edit(&mut state);
        let path = d.join(format!("{tag}.safetensors"));
        write(&path, &state);
        let e = err(&path);
        assert!(
            e.contains(&format!("{tag}.safetensors")) && e.contains(want),
            "{tag}: {e}"
        );
    }
    // Saving into a folder that does not exist fails cleanly.
    let e = checkpoint::save(gpu, &m.store, &d.join("no/such/dir/x.safetensors")).unwrap_err();
    assert!(e.to_string().contains("x.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

//! The C ABI from Python: `capi/python/test_ctypes.py` calls every function
//! through ctypes on NumPy arrays and writes inputs and outputs; here each
//! output is recomputed with scorecl-core and must be identical (the same
//! code on the same f32 inputs). Skipped without python3 + NumPy unless CI
//! is set. Also: the header declares exactly the exported functions.

use std::path::{Path, PathBuf};
use std::process::Command;

use scorecl_core::knn::{self, KnnConfig, KnnSet};
use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::vicreg::VicRegConfig;
use scorecl_core::weights::{self, ScoreWeightConfig, WeightMode};
use scorecl_core::wmse::WmseConfig;
use scorecl_core::{simclr, simsiam, vicreg, wmse, GradPair, Views};

fn library() -> PathBuf {
    // target/<profile>/deps/python-HASH → target/<profile>/libscorecl_capi.so
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join(format!(
        "{}scorecl_capi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn f32s(dir: &Path, name: &str) -> Vec<f32> {
    let b = std::fs::read(dir.join(format!("{name}.f32"))).unwrap();
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u32s(dir: &Path, name: &str) -> Vec<u32> {
    let b = std::fs::read(dir.join(format!("{name}.u32"))).unwrap();
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn python_with_numpy() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Loss and both gradients of a pair loss, from a closure over the core.
fn pair(n: usize, d: usize, f: impl FnOnce(GradPair<'_>) -> f32) -> (f32, Vec<f32>, Vec<f32>) {
    let (mut a, mut b) = (vec![0.0; n * d], vec![0.0; n * d]);
    let l = f(GradPair::new(&mut a, &mut b));
    (l, a, b)
}

#[test]
fn python_ctypes_results_equal_the_core() {
    if !python_with_numpy() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with NumPy"
        );
        eprintln!("SKIPPED: python3 with NumPy not found");
        return;
    }
    let lib = library();
    assert!(
        lib.exists(),
        "{} not built: run `cargo build -p scorecl-capi` first (scripts/test.sh does; \
         `cargo test` builds only the rlib)",
        lib.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/test_ctypes.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&lib)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_like::Manifest = serde_like::read(&dir.join("manifest.json"));
    let (n, dim, d) = (16usize, 48usize, 8usize);
    assert_eq!(m.shape("s1"), vec![n, dim]);

    // Weights.
    let (s1, s2) = (f32s(dir, "s1"), f32s(dir, "s2"));
    let cfg = ScoreWeightConfig {
        alpha: 0.5,
        ..Default::default()
    };
    let (mut w, mut st) = (vec![0.0; n], vec![0.0; 2 * n]);
    let v = Views::new(&s1, &s2, n, dim).unwrap();
    weights::score_weights(
        v,
        &cfg,
        &Philox::new(0, stream_id(Purpose::Shuffle, 0)),
        &mut w,
        &mut st,
    )
    .unwrap();
    assert_eq!(f32s(dir, "w_score"), w);
    assert_eq!(f32s(dir, "stats"), st);
    let shuffled = ScoreWeightConfig {
        mode: WeightMode::Shuffled,
        ..cfg
    };
    let mut ws = vec![0.0; n];
    let mut st2 = vec![0.0; 2 * n];
    weights::score_weights(
        v,
        &shuffled,
        &Philox::new(3, stream_id(Purpose::Shuffle, 5)),
        &mut ws,
        &mut st2,
    )
    .unwrap();
    assert_eq!(f32s(dir, "w_shuffled"), ws);
    assert_ne!(ws, w, "the shuffle moved something");
    let from = ScoreWeightConfig {
        gamma: 2.0,
        w_max: 3.0,
        ..Default::default()
    };
    let mut wf = vec![0.0; n];
    weights::from_statistics(
        &st[..n],
        &st[n..],
        &from,
        &Philox::new(0, stream_id(Purpose::Shuffle, 0)),
        &mut wf,
    )
    .unwrap();
    assert_eq!(f32s(dir, "w_stats"), wf);

    // Losses and gradients.
    let (z1, z2, p1, p2) = (
        f32s(dir, "z1"),
        f32s(dir, "z2"),
        f32s(dir, "p1"),
        f32s(dir, "p2"),
    );
    let z = Views::new(&z1, &z2, n, d).unwrap();
    let (l, g1, g2) = pair(n, d, |g| {
        let mut s = vec![0.0; simclr::scratch_len(n, d)];
        simclr::loss(
            z,
            Some(&w),
            &simclr::SimClrConfig { temperature: 0.5 },
            Some(g),
            &mut s,
        )
        .unwrap()
    });
    assert_eq!(m.value("simclr_loss"), l);
    assert_eq!((f32s(dir, "simclr_g1"), f32s(dir, "simclr_g2")), (g1, g2));
    let mut s = vec![0.0; simclr::scratch_len(n, d)];
    let plain = simclr::loss(
        z,
        None,
        &simclr::SimClrConfig { temperature: 0.5 },
        None,
        &mut s,
    )
    .unwrap();
    assert_eq!(m.value("simclr_unweighted"), plain);

    let p = Views::new(&p1, &p2, n, d).unwrap();
    let (l, g1, g2) = pair(n, d, |g| simsiam::loss(p, z, Some(&w), Some(g)).unwrap());
    assert_eq!(m.value("simsiam_loss"), l);
    assert_eq!((f32s(dir, "simsiam_g1"), f32s(dir, "simsiam_g2")), (g1, g2));

    let (l, g1, g2) = pair(n, d, |g| {
        let mut s = vec![0.0f64; wmse::scratch_len(n, d)];
        wmse::loss(
            z,
            Some(&w),
            None,
            &WmseConfig {
                eps: 0.1,
                w_size: 8,
            },
            Some(g),
            &mut s,
        )
        .unwrap()
    });
    assert_eq!(m.value("wmse_loss"), l);
    assert_eq!((f32s(dir, "wmse_g1"), f32s(dir, "wmse_g2")), (g1, g2));

    let mut terms = [0.0f32; 4];
    let (_, g1, g2) = pair(n, d, |g| {
        let mut s = vec![0.0; vicreg::scratch_len(d)];
        let r = vicreg::loss(z, Some(&w), &VicRegConfig::default(), Some(g), &mut s).unwrap();
        terms = [r.loss, r.invariance, r.variance, r.covariance];
        r.loss
    });
    assert_eq!(m.values("vicreg_terms"), terms.to_vec());
    assert_eq!((f32s(dir, "vicreg_g1"), f32s(dir, "vicreg_g2")), (g1, g2));

    // k-NN.
    let (sims, labels) = (f32s(dir, "sims"), u32s(dir, "labels"));
    let mut scores = vec![0.0; 3];
    let pred = knn::vote(&sims, &labels, 0.1, &mut scores);
    assert_eq!(m.value("vote_pred"), pred as f32);
    assert_eq!(f32s(dir, "vote_scores"), scores);
    let (train, train_labels, test) = (
        f32s(dir, "train"),
        u32s(dir, "train_labels"),
        f32s(dir, "test"),
    );
    let set = KnnSet {
        train: &train,
        train_labels: &train_labels,
        test: &test,
        d,
        classes: 4,
    };
    let mut preds = vec![0u32; 12];
    let mut scratch = vec![0.0; knn::scratch_len(40, 5, 4)];
    let mut idx = vec![0u32; knn::index_scratch_len(40, 5)];
    knn::predict(
        &set,
        &KnnConfig {
            k: 5,
            temperature: 0.1,
        },
        &mut preds,
        &mut scratch,
        &mut idx,
    )
    .unwrap();
    assert_eq!(u32s(dir, "preds"), preds);
}

#[test]
fn the_header_declares_exactly_the_exported_functions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rs = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let h = std::fs::read_to_string(root.join("include/scorecl.h")).unwrap();
    // name → parameter count, from `pub unsafe extern "C" fn NAME(...)`.
    let exported: Vec<(String, usize)> = rs
        .split("pub unsafe extern \"C\" fn ")
        .skip(1)
        .map(|s| {
            let name = s[..s.find('(').unwrap()].to_string();
            let params = &s[s.find('(').unwrap() + 1..s.find(')').unwrap()];
            (
                name,
                params.split(',').filter(|p| !p.trim().is_empty()).count(),
            )
        })
        .collect();
    assert!(exported.len() >= 9, "{exported:?}");
    // Declarations: lines starting with the return type.
    let declared: Vec<(String, usize)> = ["\nint32_t scorecl_", "\nsize_t scorecl_"]
        .iter()
        .flat_map(|start| h.split(start).skip(1))
        .map(|s| {
            let open = s.find('(').unwrap();
            let params = &s[open + 1..s.find(')').unwrap()];
            (
                format!("scorecl_{}", &s[..open]),
                params.split(',').filter(|p| !p.trim().is_empty()).count(),
            )
        })
        .collect();
    let (mut a, mut b) = (exported.clone(), declared);
    a.sort();
    b.sort();
    assert_eq!(a, b, "header and src/lib.rs disagree");
    // The Python wrapper binds every function too.
    let py = std::fs::read_to_string(root.join("python/scorecl_capi.py")).unwrap();
    for (name, _) in &exported {
        assert!(
            py.contains(&format!("\"{name}\"")),
            "{name} missing in scorecl_capi.py"
        );
    }
}

/// A minimal reader of the manifest (no serde dependency needed): numbers,
/// lists of numbers, by key.
mod serde_like {
    use std::path::Path;

    pub struct Manifest(String);

    pub fn read(path: &Path) -> Manifest {
        Manifest(std::fs::read_to_string(path).unwrap())
    }

    impl Manifest {
        fn raw(&self, key: &str) -> &str {
            let k = format!("\"{key}\":");
            let at = self.0.find(&k).unwrap_or_else(|| panic!("{key} missing")) + k.len();
            let rest = self.0[at..].trim_start();
            if rest.starts_with('[') {
                &rest[..=rest.find(']').unwrap()]
            } else {
                let end = rest.find([',', '\n', '}']).unwrap();
                rest[..end].trim()
            }
        }

        pub fn values(&self, key: &str) -> Vec<f32> {
            self.raw(key)
                .trim_matches(['[', ']'])
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse::<f64>().unwrap() as f32)
                .collect()
        }

        pub fn value(&self, key: &str) -> f32 {
            self.raw(key).parse::<f64>().unwrap() as f32
        }

        pub fn shape(&self, key: &str) -> Vec<usize> {
            self.values(key).iter().map(|v| *v as usize).collect()
        }
    }
}

//! The linear probe's pieces: the `xent` kernel against the core's
//! `xent::softmax_xent` (loss per row and gradient), and the probe itself
//! learning a linearly separable problem (and failing cleanly on bad
//! settings).

mod common;

use scorecl_host::core::xent;
use scorecl_host::eval::{linear_probe, Features, LinearConfig};
use scorecl_host::ops::xent::xent;
use scorecl_host::{DType, Gpu, Tensor};

fn upload(gpu: &Gpu, v: &[f32]) -> Tensor {
    let t = gpu.tensor(&[v.len()], DType::F32).unwrap();
    gpu.write(&t, bytemuck::cast_slice(v)).unwrap();
    t
}

#[test]
fn xent_kernel_matches_the_core() {
    for gpu in common::gpus() {
        for &(rows, classes, scale, y_off) in &[
            (1usize, 2usize, 1.0f32, 0usize),
            (7, 10, 4.0, 3),
            (33, 100, 20.0, 5),
        ] {
            let z = common::normals(rows as u64, rows * classes, scale);
            let all: Vec<u32> = (0..rows + y_off)
                .map(|i| ((i * 13) % classes) as u32)
                .collect();
            let labels = &all[y_off..];
            let mut want_g = vec![0.0; rows * classes];
            let want = xent::softmax_xent(&z, labels, classes, &mut want_g).unwrap();
            let lt = gpu.tensor(&[all.len()], DType::U32).unwrap();
            gpu.write(&lt, bytemuck::cast_slice(&all)).unwrap();
            let (loss, grad) = (
                gpu.tensor(&[rows], DType::F32).unwrap(),
                gpu.tensor(&[rows * classes], DType::F32).unwrap(),
            );
            let mut s = gpu.step("xent test");
            xent(
                &mut s,
                &upload(gpu, &z),
                &lt,
                y_off,
                rows,
                classes,
                1.0 / rows as f32,
                &loss,
                &grad,
            )
            .unwrap();
            let (il, ig) = (s.readback(&loss), s.readback(&grad));
            let rb = s.submit().unwrap();
            let l = rb.f32(il);
            let mean = l[..rows].iter().map(|v| *v as f64).sum::<f64>() / rows as f64;
            assert!(
                (mean - want as f64).abs() <= 1e-5 + 1e-5 * want.abs() as f64,
                "loss {mean} vs core {want} ({rows}×{classes})"
            );
            common::assert_close(
                "xent grad",
                &rb.f32(ig)[..rows * classes],
                &want_g,
                1e-6,
                1e-4,
            );
        }
    }
}

/// Gaussian clusters around well-separated centres.
fn clusters(seed: u64, n: usize, d: usize, classes: usize) -> (Vec<f32>, Vec<u32>) {
    let centres = common::normals(99, classes * d, 2.0);
    let noise = common::normals(seed, n * d, 0.5);
    let labels: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    let x = (0..n * d)
        .map(|j| centres[labels[j / d] as usize * d + j % d] + noise[j])
        .collect();
    (x, labels)
}

#[test]
fn linear_probe_learns_separable_features() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    for (classes, optimizer, lr) in [(4usize, "sgd", 0.1f32), (12, "adam", 0.01)] {
        let d = 16;
        let (xtr, ytr) = clusters(1, 240, d, classes);
        let (xte, yte) = clusters(2, 96, d, classes);
        let train = Features {
            tensor: upload(gpu, &xtr),
            n: 240,
            d,
        };
        let test = Features {
            tensor: upload(gpu, &xte),
            n: 96,
            d,
        };
        let cfg = LinearConfig {
            epochs: 10,
            batch_size: 32,
            optimizer: optimizer.into(),
            lr,
            ..LinearConfig::default()
        };
        let r = linear_probe(gpu, &train, &ytr, &test, &yte, classes, &cfg).unwrap();
        println!("{classes} classes, {optimizer}: {r:?}");
        assert!(r.top1 > 95.0, "{r:?}");
        assert!(r.train_loss < 0.5, "{r:?}");
        assert_eq!(r.top5.is_some(), classes > 10);
        if let Some(t5) = r.top5 {
            assert!(t5 >= r.top1);
        }
        // Untrained (one step at a tiny lr) is far worse: the probe learns.
        let weak = LinearConfig {
            epochs: 1,
            lr: 1e-6,
            ..cfg.clone()
        };
        let w = linear_probe(gpu, &train, &ytr, &test, &yte, classes, &weak).unwrap();
        assert!(w.top1 < r.top1 - 20.0, "untrained {w:?} vs trained {r:?}");
    }
}

#[test]
fn linear_probe_rejects_bad_settings() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let f = Features {
        tensor: upload(gpu, &[0.0; 8]),
        n: 2,
        d: 4,
    };
    for (cfg, field) in [
        (
            LinearConfig {
                lr: -1.0,
                ..LinearConfig::default()
            },
            "linear.lr",
        ),
        (
            LinearConfig {
                epochs: 0,
                ..LinearConfig::default()
            },
            "linear.epochs",
        ),
        (
            LinearConfig {
                optimizer: "lbfgs".into(),
                ..LinearConfig::default()
            },
            "linear.optimizer",
        ),
    ] {
        let e = linear_probe(gpu, &f, &[0, 1], &f, &[0, 1], 2, &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
    let e = linear_probe(gpu, &f, &[0, 2], &f, &[0, 1], 2, &LinearConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 2"), "{e}");
    // A learning rate that diverges is reported, not returned as a number.
    let big = Features {
        tensor: upload(gpu, &[1e30; 8]),
        n: 2,
        d: 4,
    };
    let cfg = LinearConfig {
        epochs: 2,
        lr: 1e10,
        ..LinearConfig::default()
    };
    let e = linear_probe(gpu, &big, &[0, 1], &big, &[0, 1], 2, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not finite"), "{e}");
}

//! Data-parallel pieces (`scorecl_host::dist`), with two ranks as threads
//! of this process ([`ThreadComm`]) on every device:
//!
//! - the collectives: gathers in rank order, sums the same bits on every
//!   rank, and a rank that leaves or hangs ends the others' collectives
//!   with an error naming it;
//! - a step's host operations run between the commands around them;
//! - NT-Xent over the gathered global batch: each rank's rows of the
//!   gradient equal the single-device gradient's (the core's reference,
//!   SimCLR's own tolerances), and the version that backpropagates only a
//!   rank's own anchors (a gather without the gradient's exchange) does not;
//! - synchronised batch norm on two ranks equals one batch norm over the
//!   whole batch (outputs, statistics, running statistics, gradients;
//!   batch norm's own tolerances), 2d and 1d.
mod common;

use std::rc::Rc;
use std::time::Duration;

use common::{assert_close, assert_grad, gpus, normals};
use scorecl_host::core::simclr::{self, SimClrConfig};
use scorecl_host::core::{GradPair, Views};
use scorecl_host::dist::{self, Comm, Link, Shard, ThreadComm};
use scorecl_host::ops::batchnorm::{self, BnSpec, BnTensors};
use scorecl_host::ops::simclr::SimClr;
use scorecl_host::{DType, Error, Gpu};

/// Runs `f(rank, comm)` on `size` threads, one rank each; the results in
/// rank order.
fn ranks<T: Send>(size: usize, f: impl Fn(usize, Link) -> T + Sync) -> Vec<T> {
    let comms = ThreadComm::group(size);
    std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(r, c)| {
                let f = &f;
                s.spawn(move || f(r, Rc::new(c) as Link))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn collectives_gather_in_rank_order_and_sum_the_same_bits_on_every_rank() {
    let out = ranks(3, |r, c| {
        let g = c.all_gather(&[r as f32, 10.0 + r as f32]).unwrap();
        // Values whose sum depends on the order of the additions.
        let mut s = [[1e8f32, 1.0, -1e8][r], 0.1 * (r as f32 + 1.0)];
        c.all_reduce_sum(&mut s).unwrap();
        let b = c.all_gather_bytes(&vec![r as u8; r + 1]).unwrap();
        (g, s, b)
    });
    for (g, s, b) in &out {
        assert_eq!(g, &[0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
        // Rank order: (1e8 + 1) − 1e8 in f32.
        assert_eq!(s[0], (1e8f32 + 1.0) + -1e8);
        assert_eq!(s.map(f32::to_bits), out[0].1.map(f32::to_bits));
        assert_eq!(b, &vec![vec![0u8], vec![1, 1], vec![2, 2, 2]]);
    }
}

#[test]
fn a_rank_that_leaves_ends_the_others_collectives_naming_it() {
    let mut comms = ThreadComm::group(2);
    let gone = comms.pop().unwrap();
    drop(gone);
    match comms[0].all_gather(&[1.0]) {
        Err(Error::Peer { rank: 1, message }) => assert!(message.contains("left"), "{message}"),
        other => panic!("expected rank 1 to be named, got {other:?}"),
    }
}

#[test]
fn a_rank_that_hangs_times_out_naming_it() {
    let mut comms = ThreadComm::group(2);
    comms[0].timeout = Duration::from_millis(200);
    let t0 = std::time::Instant::now();
    let r = comms[0].all_gather(&[1.0]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    match r {
        Err(Error::Peer { rank: 1, message }) => {
            assert!(message.contains("did not reach"), "{message}")
        }
        other => panic!("expected rank 1 to be named, got {other:?}"),
    }
}

#[test]
fn a_host_operation_sees_the_commands_before_it_and_the_commands_after_it_see_its_result() {
    for gpu in gpus() {
        let a = gpu.upload(&[1.0, 2.0, 3.0], &[3]).unwrap();
        let b = gpu.zeros(&[3]).unwrap();
        let mut s = gpu.step("host op");
        let before = s.readback(&a);
        s.copy(&a, &b).unwrap();
        s.host("double", &[&b], |v| {
            v[0].iter_mut().for_each(|x| *x *= 2.0);
            Ok(())
        })
        .unwrap();
        s.copy(&b, &a).unwrap();
        let after = s.readback(&a);
        let r = s.submit().unwrap();
        assert_eq!(r.f32(before)[..3], [1.0, 2.0, 3.0], "{}", gpu.describe());
        assert_eq!(r.f32(after)[..3], [2.0, 4.0, 6.0], "{}", gpu.describe());
    }
}

/// Each rank's rows of the gradient of the SimCLR loss over the gathered
/// global batch (view-stacked), with pair weights `w` (global); `own_only`:
/// the weights of other ranks' pairs set to zero (only the rank's own
/// anchors' terms backpropagated, as a gather without the gradient's
/// exchange gives).
#[allow(clippy::too_many_arguments)]
fn gathered_simclr_rows(
    gpu: &Gpu,
    comm: &Link,
    shard: Shard,
    z1: &[f32],
    z2: &[f32],
    w: &[f32],
    d: usize,
    own_only: bool,
) -> Vec<f32> {
    let (n, b) = (shard.local, shard.global());
    let rows = |z: &[f32]| z[shard.first() * d..(shard.first() + n) * d].to_vec();
    let local: Vec<f32> = rows(z1).into_iter().chain(rows(z2)).collect();
    let tl = gpu.upload(&local, &[2 * n, d]).unwrap();
    let tz = gpu.tensor(&[2 * b, d], DType::F32).unwrap();
    let mut w = w.to_vec();
    if own_only {
        for (i, v) in w.iter_mut().enumerate() {
            if i / n != shard.rank {
                *v = 0.0;
            }
        }
    }
    let tw = gpu.upload(&w, &[b]).unwrap();
    let grad = gpu.tensor(&[2 * b * d], DType::F32).unwrap();
    let loss = gpu.tensor(&[1], DType::F32).unwrap();
    let f = SimClr::new(gpu, b, d).unwrap();
    let cfg = SimClrConfig { temperature: 0.2 };
    let mut s = gpu.step("gathered simclr");
    dist::all_gather_views(&mut s, comm, shard, "gather", &tl, &tz, 2, d).unwrap();
    f.forward_backward(&mut s, &tz, &tw, &cfg, &grad, &loss)
        .unwrap();
    let ig = s.readback(&grad);
    let g = s.submit().unwrap().f32(ig);
    // This rank's rows of each view.
    (0..2)
        .flat_map(|v| {
            let at = (v * b + shard.first()) * d;
            g[at..at + n * d].to_vec()
        })
        .collect()
}

#[test]
fn gathered_nt_xent_gradient_equals_the_single_device_gradient_and_own_anchors_only_does_not() {
    for gpu in gpus() {
        let (b, d, k) = (8usize, 16usize, 2usize);
        let z1 = normals(1, b * d, 1.0);
        let z2: Vec<f32> = z1
            .iter()
            .zip(normals(2, b * d, 0.5))
            .map(|(a, e)| a + e)
            .collect();
        let w: Vec<f32> = normals(3, b, 0.4).iter().map(|v| 1.0 + v).collect();
        let (mut g1, mut g2) = (vec![0.0; b * d], vec![0.0; b * d]);
        let mut scratch = vec![0.0; simclr::scratch_len(b, d)];
        simclr::loss(
            Views::new(&z1, &z2, b, d).unwrap(),
            Some(&w),
            &SimClrConfig { temperature: 0.2 },
            Some(GradPair::new(&mut g1, &mut g2)),
            &mut scratch,
        )
        .unwrap();
        for own_only in [false, true] {
            let per_rank = ranks(k, |r, c| {
                let shard = Shard {
                    rank: r,
                    size: k,
                    local: b / k,
                };
                gathered_simclr_rows(gpu, &c, shard, &z1, &z2, &w, d, own_only)
            });
            // Reassemble the global gradient from the ranks' rows.
            let n = b / k;
            let mut got1 = Vec::new();
            let mut got2 = Vec::new();
            for rows in &per_rank {
                got1.extend_from_slice(&rows[..n * d]);
                got2.extend_from_slice(&rows[n * d..]);
            }
            let got: Vec<f32> = got1.into_iter().chain(got2).collect();
            let want: Vec<f32> = g1.iter().chain(&g2).copied().collect();
            if !own_only {
                assert_grad(
                    &format!("gathered gradient on {}", gpu.describe()),
                    &got,
                    &want,
                    1e-4,
                    1e-5,
                );
            } else {
                let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let worst = got
                    .iter()
                    .zip(&want)
                    .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
                assert!(
                    worst > 0.05 * scale,
                    "own anchors only should lose the other ranks' terms: worst {worst:e} of {scale:e}"
                );
            }
        }
    }
}

/// One batch norm's forward and backward on `x` (n × c × s) with `dy`,
/// in a step synchronised over `comm` when given: (y, mean, invstd,
/// running mean, running var, dx, dγ, dβ).
#[allow(clippy::too_many_arguments)]
fn bn_pass(
    gpu: &Gpu,
    comm: Option<&Link>,
    x: &[f32],
    dy: &[f32],
    relu: bool,
    b: &BnSpec,
    gamma: &[f32],
    beta: &[f32],
) -> Vec<Vec<f32>> {
    let (c, len) = (b.c, x.len());
    let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
    let (tx, tg, tb, tdy) = (up(x), up(gamma), up(beta), up(dy));
    let trm = up(&vec![0.1; c]);
    let trv = up(&vec![0.9; c]);
    let z = |k: usize| gpu.tensor(&[k], DType::F32).unwrap();
    let (mean, invstd, y, sums, dx) = (z(c), z(c), z(len), z(2 * c), z(len));
    let (dg, db) = (gpu.zeros(&[c]).unwrap(), gpu.zeros(&[c]).unwrap());
    let t = BnTensors {
        gamma: &tg,
        beta: &tb,
        running_mean: &trm,
        running_var: &trv,
        mean: &mean,
        invstd: &invstd,
    };
    let mut s = gpu.step("bn");
    if let Some(c) = comm {
        s = s.with_sync_batchnorm(c.clone());
    }
    let spec = BnSpec { relu, ..*b };
    batchnorm::forward(&mut s, &tx, &t, &spec, &y).unwrap();
    if relu {
        batchnorm::backward_relu(&mut s, &tx, &tdy, &y, &t, b, &sums, &dg, &db, &dx).unwrap();
    } else {
        batchnorm::backward(&mut s, &tx, &tdy, &t, b, &sums, &dg, &db, &dx).unwrap();
    }
    let ids: Vec<usize> = [&y, &mean, &invstd, &trm, &trv, &dx, &dg, &db]
        .iter()
        .map(|t| s.readback(t))
        .collect();
    let r = s.submit().unwrap();
    ids.iter()
        .zip([len, c, c, c, c, len, c, c])
        .map(|(&i, l)| r.f32(i)[..l].to_vec())
        .collect()
}

#[test]
fn synchronised_batch_norm_on_two_ranks_equals_one_batch_norm_over_the_whole_batch() {
    for gpu in gpus() {
        for (n, c, s, relu) in [
            (3usize, 5usize, 16usize, false),
            (3, 5, 16, true),
            (4, 6, 1, false),
        ] {
            let k = 2usize;
            let b = BnSpec::new(n * k, c, s);
            let len = n * k * c * s;
            let x: Vec<f32> = normals(7, len, 2.0)
                .iter()
                .enumerate()
                // Ranks with different means, so the combination matters.
                .map(|(i, v)| v + if i < len / 2 { 0.7 } else { -1.3 })
                .collect();
            let dy = normals(8, len, 1.0);
            let gamma: Vec<f32> = normals(9, c, 0.3).iter().map(|v| v + 1.0).collect();
            let beta = normals(10, c, 0.3);
            let whole = bn_pass(gpu, None, &x, &dy, relu, &b, &gamma, &beta);
            let per_rank = ranks(k, |r, comm| {
                let part = |v: &[f32]| v[r * len / k..(r + 1) * len / k].to_vec();
                let spec = BnSpec::new(n, c, s);
                bn_pass(
                    gpu,
                    Some(&comm),
                    &part(&x),
                    &part(&dy),
                    relu,
                    &spec,
                    &gamma,
                    &beta,
                )
            });
            let tag = format!("n{n}×{k} c{c} s{s} relu {relu} on {}", gpu.describe());
            let joined =
                |i: usize| -> Vec<f32> { per_rank.iter().flat_map(|p| p[i].clone()).collect() };
            assert_close(&format!("{tag} y"), &joined(0), &whole[0], 1e-5, 1e-5);
            for (i, what) in [
                (1, "mean"),
                (2, "invstd"),
                (3, "running_mean"),
                (4, "running_var"),
            ] {
                for p in &per_rank {
                    assert_close(&format!("{tag} {what}"), &p[i], &whole[i], 1e-5, 1e-5);
                    // Every rank holds the same statistics, bit for bit.
                    assert_eq!(p[i], per_rank[0][i], "{tag} {what}: ranks differ");
                }
            }
            assert_grad(&format!("{tag} dx"), &joined(5), &whole[5], 1e-4, 1e-4);
            for (i, what) in [(6, "dgamma"), (7, "dbeta")] {
                let sum: Vec<f32> = (0..c)
                    .map(|j| per_rank.iter().map(|p| p[i][j]).sum())
                    .collect();
                assert_grad(
                    &format!("{tag} {what} (sum over ranks)"),
                    &sum,
                    &whole[i],
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

/// A data-parallel step exchanges each group of gradients as soon as the
/// backward pass reports it: every parameter must be reported exactly once,
/// after its gradient is written (the last blocks first, the stem last).
#[test]
fn the_encoders_backward_reports_every_parameter_once_last_blocks_first() {
    use scorecl_host::nn::resnet::{ResNet, ResNetConfig, Stem};
    use scorecl_host::nn::Encoder;
    let gpu = common::cpu();
    for cfg in [
        ResNetConfig::resnet18(4, Stem::Cifar { padding: 1 }),
        ResNetConfig::resnet50(4, Stem::ImageNet),
    ] {
        let net = ResNet::new(gpu, cfg, 0).unwrap();
        let (n, size) = (2usize, 32usize);
        let ws = net.workspace(gpu, n, size, size, false).unwrap();
        let x = gpu
            .upload(
                &normals(1, n * 3 * size * size, 1.0),
                &[n * 3 * size * size],
            )
            .unwrap();
        let df = gpu
            .upload(
                &normals(2, n * net.feature_dim(), 1.0),
                &[n * net.feature_dim()],
            )
            .unwrap();
        let mut s = gpu.step("backward");
        net.forward(&mut s, &ws, &x, true).unwrap();
        let mut reported: Vec<std::ops::Range<usize>> = Vec::new();
        net.backward_notify(&mut s, &ws, &x, &df, &mut |_, r| {
            reported.push(r);
            Ok(())
        })
        .unwrap();
        s.submit().unwrap();
        let names: Vec<&str> = net.store().params.iter().map(|p| p.name.as_str()).collect();
        let mut seen = vec![0u32; names.len()];
        for r in &reported {
            for i in r.clone() {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "reported counts {seen:?}");
        assert!(
            names[reported[0].start].starts_with("layer4."),
            "first: {}",
            names[reported[0].start]
        );
        assert!(names[reported.last().unwrap().start].starts_with("conv1"));
        // Last layers first: each group's parameters come before the
        // previous group's in the store.
        for w in reported.windows(2) {
            assert!(w[1].end <= w[0].start, "{reported:?}");
        }
    }
}

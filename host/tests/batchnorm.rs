//! Batch norm (2d and 1d, training and evaluation, affine and not, fused
//! ReLU) against the CPU twin in f64. Tolerances: outputs and statistics
//! 1e-5 relative + 1e-5; gradients 1e-4 relative + 1e-4 of their scale
//! (sums over N·H·W terms in f32).
mod common;

use common::{assert_close, assert_grad, gpus, normals};
use scorecl_host::ops::batchnorm::{self, cpu, BnSpec, BnTensors};
use scorecl_host::DType;

#[test]
fn batchnorm_matches_pytorch_semantics() {
    for gpu in gpus() {
        for (n, c, s) in [
            (2usize, 3usize, 16usize),
            (4, 8, 1),
            (8, 5, 49),
            (3, 1, 7),
            (2, 64, 1),
        ] {
            for (training, affine, relu) in [
                (true, true, false),
                (true, false, false),
                (false, true, false),
                (true, true, true),
                (false, false, true),
            ] {
                let b = BnSpec {
                    training,
                    affine,
                    relu,
                    ..BnSpec::new(n, c, s)
                };
                let len = n * c * s;
                let x: Vec<f32> = normals(n as u64 + c as u64, len, 2.0)
                    .iter()
                    .map(|v| v + 0.7)
                    .collect();
                let gamma: Vec<f32> = normals(1, c, 0.3).iter().map(|v| v + 1.0).collect();
                let beta = normals(2, c, 0.3);
                let rm = normals(3, c, 0.2);
                let rv: Vec<f32> = normals(4, c, 0.2).iter().map(|v| v.abs() + 0.5).collect();
                let dy = normals(5, len, 1.0);
                let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
                let (tx, tg, tb, trm, trv, tdy) =
                    (up(&x), up(&gamma), up(&beta), up(&rm), up(&rv), up(&dy));
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
                let mut st = gpu.step("bn");
                batchnorm::forward(&mut st, &tx, &t, &b, &y).unwrap();
                let plain = BnSpec { relu: false, ..b };
                batchnorm::backward(&mut st, &tx, &tdy, &t, &plain, &sums, &dg, &db, &dx).unwrap();
                let ids = [
                    st.readback(&y),
                    st.readback(&trm),
                    st.readback(&trv),
                    st.readback(&dx),
                    st.readback(&dg),
                    st.readback(&db),
                ];
                let r = st.submit().unwrap();
                let f = cpu::forward(&x, &gamma, &beta, &rm, &rv, &b);
                let tag = format!("n{n} c{c} s{s} training {training} affine {affine} relu {relu}");
                assert_close(&format!("{tag} y"), &r.f32(ids[0])[..len], &f.y, 1e-5, 1e-5);
                assert_close(
                    &format!("{tag} running_mean"),
                    &r.f32(ids[1])[..c],
                    &f.running_mean,
                    1e-5,
                    1e-5,
                );
                assert_close(
                    &format!("{tag} running_var"),
                    &r.f32(ids[2])[..c],
                    &f.running_var,
                    1e-5,
                    1e-5,
                );
                let (want_dx, want_dg, want_db) = cpu::backward(&x, &dy, &gamma, &f, &plain);
                assert_grad(
                    &format!("{tag} dx"),
                    &r.f32(ids[3])[..len],
                    &want_dx,
                    1e-4,
                    1e-4,
                );
                if affine {
                    assert_grad(
                        &format!("{tag} dgamma"),
                        &r.f32(ids[4])[..c],
                        &want_dg,
                        1e-4,
                        1e-4,
                    );
                    assert_grad(
                        &format!("{tag} dbeta"),
                        &r.f32(ids[5])[..c],
                        &want_db,
                        1e-4,
                        1e-4,
                    );
                } else {
                    assert!(
                        r.f32(ids[4])[..c].iter().all(|v| *v == 0.0),
                        "no γ gradient without affine"
                    );
                }
            }
        }
    }
}

/// The fused residual apply: relu(bn(x) + r) equals the CPU twin's batch
/// norm plus r, then ReLU (and without the ReLU), in one dispatch.
#[test]
fn batchnorm_add_residual_matches_bn_then_add_relu() {
    for gpu in gpus() {
        for (n, c, s, training, relu) in [
            (2usize, 3usize, 16usize, true, true),
            (4, 8, 9, false, true),
            (3, 5, 4, true, false),
        ] {
            let b = BnSpec {
                training,
                relu,
                ..BnSpec::new(n, c, s)
            };
            let len = n * c * s;
            let x = normals(11, len, 1.5);
            let r = normals(12, len, 1.0);
            let gamma: Vec<f32> = normals(13, c, 0.3).iter().map(|v| v + 1.0).collect();
            let beta = normals(14, c, 0.3);
            let rm = normals(15, c, 0.2);
            let rv: Vec<f32> = normals(16, c, 0.2).iter().map(|v| v.abs() + 0.5).collect();
            let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
            let (tx, tr, tg, tb, trm, trv) =
                (up(&x), up(&r), up(&gamma), up(&beta), up(&rm), up(&rv));
            let z = |k: usize| gpu.tensor(&[k], DType::F32).unwrap();
            let (mean, invstd, y) = (z(c), z(c), z(len));
            let t = BnTensors {
                gamma: &tg,
                beta: &tb,
                running_mean: &trm,
                running_var: &trv,
                mean: &mean,
                invstd: &invstd,
            };
            let mut st = gpu.step("bn add");
            batchnorm::forward_add(&mut st, &tx, &t, &b, &tr, &y).unwrap();
            let iy = st.readback(&y);
            let got = st.submit().unwrap().f32(iy)[..len].to_vec();
            let f = cpu::forward(&x, &gamma, &beta, &rm, &rv, &BnSpec { relu: false, ..b });
            let want: Vec<f32> =
                f.y.iter()
                    .zip(&r)
                    .map(|(a, b)| if relu { (a + b).max(0.0) } else { a + b })
                    .collect();
            assert_close(
                &format!("n{n} c{c} s{s} {training} {relu}"),
                &got,
                &want,
                1e-5,
                1e-5,
            );
            // A residual of the wrong length is named.
            let short = z(len - 1);
            let mut st = gpu.step("bn add bad");
            let e = batchnorm::forward_add(&mut st, &tx, &t, &b, &short, &y).unwrap_err();
            assert!(e.to_string().contains("residual"), "{e}");
        }
    }
}

/// The ReLU's backward fused into the batch norm's: backward_relu(dy, y)
/// equals backward(dy·[y > 0]) on the CPU twin, in training and evaluation.
#[test]
fn batchnorm_backward_with_fused_relu_matches_masked_backward() {
    for gpu in gpus() {
        for (n, c, s, training, affine) in [
            (2usize, 3usize, 16usize, true, true),
            (4, 8, 9, false, true),
            (3, 5, 4, true, false),
        ] {
            let b = BnSpec {
                training,
                affine,
                ..BnSpec::new(n, c, s)
            };
            let len = n * c * s;
            let x = normals(21, len, 1.5);
            let dy = normals(22, len, 1.0);
            let gamma: Vec<f32> = normals(23, c, 0.3).iter().map(|v| v + 1.0).collect();
            let beta = normals(24, c, 0.3);
            let rm = normals(25, c, 0.2);
            let rv: Vec<f32> = normals(26, c, 0.2).iter().map(|v| v.abs() + 0.5).collect();
            // The ReLU output of this batch norm, as the forward makes it.
            let f = cpu::forward(&x, &gamma, &beta, &rm, &rv, &BnSpec { relu: true, ..b });
            let masked: Vec<f32> = dy
                .iter()
                .zip(&f.y)
                .map(|(g, y)| if *y > 0.0 { *g } else { 0.0 })
                .collect();
            let (want_dx, want_dg, want_db) = cpu::backward(&x, &masked, &gamma, &f, &b);
            let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
            let (tx, tdy, ty, tg, tb) = (up(&x), up(&dy), up(&f.y), up(&gamma), up(&beta));
            let (trm, trv, tmean, tinv) = (up(&rm), up(&rv), up(&f.mean), up(&f.invstd));
            let z = |k: usize| gpu.tensor(&[k], DType::F32).unwrap();
            let (sums, dx) = (z(2 * c), z(len));
            let (dg, db) = (gpu.zeros(&[c]).unwrap(), gpu.zeros(&[c]).unwrap());
            let t = BnTensors {
                gamma: &tg,
                beta: &tb,
                running_mean: &trm,
                running_var: &trv,
                mean: &tmean,
                invstd: &tinv,
            };
            let mut st = gpu.step("bn backward relu");
            batchnorm::backward_relu(&mut st, &tx, &tdy, &ty, &t, &b, &sums, &dg, &db, &dx)
                .unwrap();
            let ids = [st.readback(&dx), st.readback(&dg), st.readback(&db)];
            let r = st.submit().unwrap();
            let tag = format!("n{n} c{c} s{s} training {training} affine {affine}");
            assert_grad(
                &format!("{tag} dx"),
                &r.f32(ids[0])[..len],
                &want_dx,
                1e-4,
                1e-4,
            );
            if affine {
                assert_grad(
                    &format!("{tag} dgamma"),
                    &r.f32(ids[1])[..c],
                    &want_dg,
                    1e-4,
                    1e-4,
                );
                assert_grad(
                    &format!("{tag} dbeta"),
                    &r.f32(ids[2])[..c],
                    &want_db,
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

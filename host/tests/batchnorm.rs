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

//! Linear layers against the CPU twin: forward with bias and fused ReLU,
//! backward accumulating dW and db. Tolerance: 1e-5 relative + the scale
//! of the result times 1e-5 (sums of up to 129 products in f32).
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::ops::linear::{self, cpu, LinearShape};
use scorecl_host::DType;

#[test]
fn linear_forward_and_backward_match_cpu() {
    for gpu in gpus() {
        for (n, fan_in, fan_out) in [
            (1, 1, 1),
            (3, 17, 5),
            (17, 129, 33),
            (64, 32, 64),
            (8, 512, 256),
        ] {
            let s = LinearShape { n, fan_in, fan_out };
            let x = normals(n as u64, n * fan_in, 1.0);
            let w = normals(fan_in as u64, fan_out * fan_in, 0.1);
            let b = normals(fan_out as u64, fan_out, 0.1);
            let dy = normals(7, n * fan_out, 1.0);
            let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
            let (tx, tw, tb, tdy) = (up(&x), up(&w), up(&b), up(&dy));
            let y = gpu.tensor(&[n * fan_out], DType::F32).unwrap();
            let yr = gpu.tensor(&[n * fan_out], DType::F32).unwrap();
            let dw0 = normals(9, fan_out * fan_in, 0.1);
            let db0 = normals(10, fan_out, 0.1);
            let (tdw, tdb) = (up(&dw0), up(&db0));
            let dx = gpu.tensor(&[n * fan_in], DType::F32).unwrap();
            let mut st = gpu.step("linear");
            linear::linear(&mut st, &tx, &tw, Some(&tb), &s, false, &y).unwrap();
            linear::linear(&mut st, &tx, &tw, Some(&tb), &s, true, &yr).unwrap();
            linear::linear_backward(&mut st, &tx, &tw, &tdy, &s, &tdw, Some(&tdb), Some(&dx))
                .unwrap();
            let ids = [
                st.readback(&y),
                st.readback(&yr),
                st.readback(&tdw),
                st.readback(&tdb),
                st.readback(&dx),
            ];
            let r = st.submit().unwrap();
            let want = cpu::linear(&x, &w, Some(&b), &s);
            let scale = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs())) * 1e-5;
            assert_close(
                "linear y",
                &r.f32(ids[0])[..n * fan_out],
                &want,
                scale(&want),
                1e-5,
            );
            let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
            assert_close(
                "linear relu",
                &r.f32(ids[1])[..n * fan_out],
                &relu,
                scale(&want),
                1e-5,
            );
            let (dw, db, want_dx) = cpu::linear_backward(&x, &w, &dy, &s);
            let dw: Vec<f32> = dw.iter().zip(&dw0).map(|(a, b)| a + b).collect();
            let db: Vec<f32> = db.iter().zip(&db0).map(|(a, b)| a + b).collect();
            assert_close(
                "linear dW",
                &r.f32(ids[2])[..fan_out * fan_in],
                &dw,
                scale(&dw),
                1e-5,
            );
            assert_close(
                "linear db",
                &r.f32(ids[3])[..fan_out],
                &db,
                scale(&db),
                1e-5,
            );
            assert_close(
                "linear dx",
                &r.f32(ids[4])[..n * fan_in],
                &want_dx,
                scale(&want_dx),
                1e-5,
            );
        }
    }
}

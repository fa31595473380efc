//! Max pooling against direct loops (values and argmax exact, the input
//! gradient within 1e-6) and global average pooling (1e-6 + 1e-5 relative;
//! its gradient exact), on every device.
mod common;

use common::{gpus, normals};
use scorecl_host::ops::conv::ConvShape;
use scorecl_host::ops::pool;
use scorecl_host::DType;

/// A pooling window: `k` × `k`, `stride`, `pad` over n × c planes of h × w.
fn shape(n: usize, c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> ConvShape {
    ConvShape {
        n,
        cin: c,
        h,
        w,
        cout: c,
        k,
        stride,
        pad,
    }
}

#[test]
fn pooling_matches_direct_loops() {
    for gpu in gpus() {
        for s in [
            shape(2, 3, 8, 8, 3, 2, 1),
            shape(1, 2, 7, 5, 3, 2, 1),
            shape(3, 4, 6, 6, 2, 2, 0),
        ] {
            let x = normals(7, s.in_len(), 1.0);
            let dy = normals(8, s.out_len(), 1.0);
            let tx = gpu.upload(&x, &[s.in_len()]).unwrap();
            let tdy = gpu.upload(&dy, &[s.out_len()]).unwrap();
            let y = gpu.tensor(&[s.out_len()], DType::F32).unwrap();
            let arg = gpu.tensor(&[s.out_len()], DType::U32).unwrap();
            let dx = gpu.tensor(&[s.in_len()], DType::F32).unwrap();
            let mut st = gpu.step("maxpool");
            pool::maxpool(&mut st, &tx, &s, &y, &arg).unwrap();
            pool::maxpool_backward(&mut st, &tdy, &arg, &s, &dx).unwrap();
            let (iy, ia, ix) = (st.readback(&y), st.readback(&arg), st.readback(&dx));
            let r = st.submit().unwrap();
            let (want_y, want_a) = pool::cpu::maxpool(&x, &s);
            assert_eq!(&r.f32(iy)[..s.out_len()], &want_y[..], "{s:?} max");
            assert_eq!(&r.u32(ia)[..s.out_len()], &want_a[..], "{s:?} argmax");
            common::assert_close(
                "maxpool dx",
                &r.f32(ix)[..s.in_len()],
                &pool::cpu::maxpool_backward(&dy, &want_a, &s),
                1e-6,
                1e-6,
            );
        }
        // Global average pooling and its gradient.
        let (n, c, hw) = (3, 5, 16);
        let x = normals(9, n * c * hw, 1.0);
        let dy = normals(10, n * c, 1.0);
        let tx = gpu.upload(&x, &[n * c * hw]).unwrap();
        let tdy = gpu.upload(&dy, &[n * c]).unwrap();
        let out = gpu.tensor(&[n * c], DType::F32).unwrap();
        let dx = gpu.tensor(&[n * c * hw], DType::F32).unwrap();
        let mut st = gpu.step("avgpool");
        pool::avgpool(&mut st, &tx, n, c, hw, &out).unwrap();
        pool::avgpool_backward(&mut st, &tdy, n, c, hw, &dx).unwrap();
        let (io, ix) = (st.readback(&out), st.readback(&dx));
        let r = st.submit().unwrap();
        let want: Vec<f32> = x
            .chunks(hw)
            .map(|p| p.iter().sum::<f32>() / hw as f32)
            .collect();
        common::assert_close("avgpool", &r.f32(io)[..n * c], &want, 1e-6, 1e-5);
        let want_dx: Vec<f32> = (0..n * c * hw).map(|i| dy[i / hw] / hw as f32).collect();
        common::assert_close("avgpool dx", &r.f32(ix)[..n * c * hw], &want_dx, 0.0, 0.0);
    }
}

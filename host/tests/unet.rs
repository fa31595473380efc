//! The score network's U-Net kernels against their CPU twins: FiLM (exact forward,
//! sums to 1e-5), nearest upsampling (exact), per-sample division.
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::ops::{elementwise, unet};
use scorecl_host::DType;

#[test]
fn film_and_upsampling_match_cpu() {
    for gpu in gpus() {
        for dims in [
            [1usize, 1usize, 1usize, 1usize],
            [2, 3, 4, 5],
            [3, 8, 16, 16],
            [2, 1, 7, 3],
        ] {
            let [n, c, h, w] = dims;
            let len = n * c * h * w;
            let x = normals(1, len, 1.0);
            let gb = normals(2, n * 2 * c, 0.3);
            let dy = normals(3, len, 1.0);
            let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
            let (tx, tgb, tdy) = (up(&x), up(&gb), up(&dy));
            let t = |k: usize| gpu.tensor(&[k], DType::F32).unwrap();
            let (y, dx, dgb, u, dus) = (t(len), t(len), t(n * 2 * c), t(4 * len), t(len));
            let dyu = up(&normals(4, 4 * len, 1.0));
            let sig: Vec<f32> = normals(5, n, 0.2).iter().map(|v| v.abs() + 0.05).collect();
            let (tsig, q) = (up(&sig), t(len));
            let mut s = gpu.step("score ops");
            unet::film(&mut s, &tx, &tgb, dims, &y).unwrap();
            unet::film_backward(&mut s, &tx, &tgb, &tdy, dims, &dx, &dgb).unwrap();
            unet::up2(&mut s, &tx, dims, &u).unwrap();
            unet::up2_backward(&mut s, &dyu, dims, &dus).unwrap();
            elementwise::div_blocks(&mut s, 2.0, &tx, &tsig, c * h * w, &q).unwrap();
            let ids = [
                s.readback(&y),
                s.readback(&dx),
                s.readback(&dgb),
                s.readback(&u),
                s.readback(&dus),
                s.readback(&q),
            ];
            let r = s.submit().unwrap();
            assert_close(
                "film",
                &r.f32(ids[0])[..len],
                &unet::cpu::film(&x, &gb, dims),
                1e-6,
                1e-6,
            );
            let (wdx, wdgb) = unet::cpu::film_backward(&x, &gb, &dy, dims);
            assert_close("film dx", &r.f32(ids[1])[..len], &wdx, 1e-6, 1e-6);
            assert_close("film dgb", &r.f32(ids[2])[..n * 2 * c], &wdgb, 1e-5, 1e-5);
            assert_close(
                "up2",
                &r.f32(ids[3])[..4 * len],
                &unet::cpu::up2(&x, dims),
                0.0,
                0.0,
            );
            let dyu_host = gpu.download(&dyu).unwrap();
            assert_close(
                "up2 backward",
                &r.f32(ids[4])[..len],
                &unet::cpu::up2_backward(&dyu_host[..4 * len], dims),
                1e-6,
                1e-6,
            );
            let want_q: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, v)| 2.0 * v / sig[i / (c * h * w)])
                .collect();
            assert_close(
                "div_blocks",
                &r.f32(ids[5])[..len],
                &want_q,
                0.0,
                2.0 * f32::EPSILON,
            );
        }
    }
}

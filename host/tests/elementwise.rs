//! Elementwise kernels against their CPU twins. Tolerance: exact (each is
//! one or two f32 operations, the same on both sides), except axpby where
//! a fused multiply-add may round once less: 2 ulp.
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::ops::elementwise::{self as ew, cpu};
use scorecl_host::{DType, Gpu, Tensor};

const SIZES: [usize; 6] = [1, 3, 17, 129, 1000, 70_000];

fn up(gpu: &Gpu, v: &[f32]) -> Tensor {
    gpu.upload(v, &[v.len()]).unwrap()
}

fn out(gpu: &Gpu, n: usize) -> Tensor {
    gpu.tensor(&[n], DType::F32).unwrap()
}

fn read(gpu: &Gpu, step: scorecl_host::Step, t: &Tensor) -> Vec<f32> {
    let _ = gpu;
    let mut step = step;
    let i = step.readback(t);
    let mut v = step.submit().unwrap().f32(i);
    v.truncate(t.len());
    v
}

#[test]
fn binary_and_unary_ops() {
    for gpu in gpus() {
        for n in SIZES {
            let (a, b) = (normals(1, n, 1.0), normals(2, n, 1.0));
            let (ta, tb, to) = (up(gpu, &a), up(gpu, &b), out(gpu, n));
            let mut s = gpu.step("axpby");
            ew::axpby(&mut s, 0.5, &ta, -2.0, &tb, &to).unwrap();
            let want = cpu::axpby(0.5, &a, -2.0, &b);
            let tol: Vec<f32> = want.iter().map(|w| 2.0 * f32::EPSILON * w.abs()).collect();
            let got = read(gpu, s, &to);
            for i in 0..n {
                assert!((got[i] - want[i]).abs() <= tol[i] + 1e-30, "axpby[{i}]");
            }
            let mut s = gpu.step("mul");
            ew::mul(&mut s, &ta, &tb, &to).unwrap();
            assert_close("mul", &read(gpu, s, &to), &cpu::mul(&a, &b), 0.0, 0.0);
            let mut s = gpu.step("scale");
            ew::scale(&mut s, 3.0, &ta, &to).unwrap();
            assert_close(
                "scale",
                &read(gpu, s, &to),
                &cpu::axpby(3.0, &a, 0.0, &b),
                0.0,
                0.0,
            );
            let mut s = gpu.step("add_relu");
            ew::add_relu(&mut s, &ta, &tb, &to).unwrap();
            assert_close(
                "add_relu",
                &read(gpu, s, &to),
                &cpu::add_relu(&a, &b),
                0.0,
                0.0,
            );
            let mut s = gpu.step("relu");
            ew::relu(&mut s, &ta, &to).unwrap();
            assert_close("relu", &read(gpu, s, &to), &cpu::relu(&a), 0.0, 0.0);
            let mut s = gpu.step("relu_backward");
            ew::relu_backward(&mut s, &ta, &tb, &to).unwrap();
            assert_close(
                "relu_backward",
                &read(gpu, s, &to),
                &cpu::relu_backward(&a, &b),
                0.0,
                0.0,
            );
            let mut s = gpu.step("fill");
            ew::fill(&mut s, 7.5, &to).unwrap();
            assert!(read(gpu, s, &to).iter().all(|v| *v == 7.5));
            // Zero is a buffer clear, not a dispatch; -0.0 keeps its sign.
            let mut s = gpu.step("fill 0");
            ew::fill(&mut s, 0.0, &to).unwrap();
            assert_eq!(s.dispatches(), 0);
            assert!(read(gpu, s, &to).iter().all(|v| v.to_bits() == 0));
            let mut s = gpu.step("fill -0");
            ew::fill(&mut s, -0.0, &to).unwrap();
            assert_eq!(s.dispatches(), 1);
            assert!(read(gpu, s, &to)
                .iter()
                .all(|v| v.to_bits() == (-0.0f32).to_bits()));
        }
    }
}

#[test]
fn add_cols_broadcasts_per_group() {
    for gpu in gpus() {
        for (rows, cols, per) in [(1, 1, 1), (6, 5, 3), (12, 17, 12), (129, 3, 43)] {
            let n = rows * cols;
            let a = normals(3, n, 1.0);
            let v = normals(4, n / per, 1.0);
            let (ta, tv, to) = (up(gpu, &a), up(gpu, &v), out(gpu, n));
            let mut s = gpu.step("add_cols");
            ew::add_cols(&mut s, &ta, -1.0, &tv, cols, per, &to).unwrap();
            assert_close(
                "add_cols",
                &read(gpu, s, &to),
                &cpu::add_cols(&a, -1.0, &v, cols, per),
                0.0,
                0.0,
            );
        }
        let ta = up(gpu, &[1.0; 10]);
        let tv = up(gpu, &[1.0; 3]);
        let mut s = gpu.step("bad");
        assert!(
            ew::add_cols(&mut s, &ta, 1.0, &tv, 3, 1, &ta).is_err(),
            "10 is not whole rows of 3"
        );
    }
}

/// f16 round trip where the device has shader-f16: values representable
/// in f16 come back exactly, others within half an f16 ulp (2⁻¹¹ relative).
#[test]
fn f16_round_trip_where_supported() {
    for gpu in gpus() {
        let x = normals(5, 1000, 10.0);
        let tx = up(gpu, &x);
        let h = gpu.tensor(&[1000], DType::F16).unwrap();
        let back = out(gpu, 1000);
        let mut s = gpu.step("f16");
        let r = ew::to_f16(&mut s, &tx, &h);
        if !gpu.caps.f16 {
            assert!(r.is_err(), "the fallback device must refuse f16");
            continue;
        }
        r.unwrap();
        ew::from_f16(&mut s, &h, &back).unwrap();
        let got = read(gpu, s, &back);
        for (g, w) in got.iter().zip(&x) {
            assert!(
                (g - w).abs() <= w.abs() * 2f32.powi(-11) + 6e-8,
                "{g} vs {w}"
            );
        }
    }
}

//! Elementwise kernels against their CPU twins (exact: one f32 operation).
mod common;

use common::{assert_close, gpus, normals};
use scorecl_host::ops::elementwise::{self, cpu};

#[test]
fn axpby_matches_cpu() {
    for gpu in gpus() {
        for n in [1usize, 3, 17, 129, 1000, 70_000] {
            let (a, b) = (normals(1, n, 1.0), normals(2, n, 1.0));
            let (ta, tb) = (gpu.upload(&a, &[n]).unwrap(), gpu.upload(&b, &[n]).unwrap());
            let out = gpu.tensor(&[n], scorecl_host::DType::F32).unwrap();
            let mut step = gpu.step("axpby");
            elementwise::axpby(&mut step, 0.5, &ta, -2.0, &tb, &out).unwrap();
            let i = step.readback(&out);
            let got = step.submit().unwrap().f32(i);
            assert_close("axpby", &got[..n], &cpu::axpby(0.5, &a, -2.0, &b), 0.0, 0.0);
        }
    }
}

//! Reductions against the CPU twin (f64). Tolerance: |err| ≤ axis·ε·Σ|x|
//! (the forward error bound of an f32 sum) + 1e-6.
mod common;

use common::{gpus, normals};
use scorecl_host::ops::reduce::{self, cpu, Reduction};

#[test]
fn sums_means_and_squares_along_an_axis() {
    for gpu in gpus() {
        for dims in [
            [1, 1, 1],
            [1, 17, 1],
            [3, 129, 1],
            [5, 1000, 1],
            [2, 3, 17],
            [1, 129, 65],
            [7, 1, 3],
            [4, 33, 200],
        ] {
            let n: usize = dims.iter().product();
            let x = normals(dims.iter().sum::<usize>() as u64, n, 2.0);
            let tx = gpu.upload(&x, &[n]).unwrap();
            let out = gpu
                .tensor(&[dims[0] * dims[2]], scorecl_host::DType::F32)
                .unwrap();
            let absx: Vec<f32> = x.iter().map(|v| v.abs()).collect();
            for op in [Reduction::Sum, Reduction::Mean, Reduction::SumSq] {
                let mut s = gpu.step("reduce");
                reduce::reduce(&mut s, &tx, dims, op, 1.0, &out).unwrap();
                let i = s.readback(&out);
                let got = s.submit().unwrap().f32(i);
                let want = cpu::reduce(&x, dims, op, 1.0);
                let mag = cpu::reduce(
                    if op == Reduction::SumSq { &x } else { &absx },
                    dims,
                    op,
                    1.0,
                );
                for j in 0..want.len() {
                    let tol = dims[1] as f32 * f32::EPSILON * mag[j].abs() + 1e-6;
                    assert!(
                        (got[j] - want[j]).abs() <= tol,
                        "{op:?} {dims:?}[{j}]: {} vs {}",
                        got[j],
                        want[j]
                    );
                }
            }
        }
    }
}

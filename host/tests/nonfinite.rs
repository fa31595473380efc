//! NaN and ±inf through the activations, against PyTorch (fixture from
//! `tests/reference/nonfinite.py`): ReLU and its gradient, the residual
//! add + ReLU, max pooling (values and argmax), the GEMM's fused bias +
//! ReLU and batch norm's fused ReLU, on every device and in every CPU
//! twin. A NaN must stay NaN where PyTorch keeps it (WGSL's and Rust's
//! `max(x, 0)` would make it 0, which hid damaged weights from the loss);
//! other values equal PyTorch's (exactly for the elementwise ops and the
//! pool, within 1e-5 relative where a product or a normalisation is
//! computed).
mod common;

use std::path::PathBuf;

use common::gpus;
use safetensors::SafeTensors;
use scorecl_host::ops::batchnorm::{self, BnSpec, BnTensors};
use scorecl_host::ops::conv::ConvShape;
use scorecl_host::ops::elementwise::{self as ew};
use scorecl_host::ops::gemm::{self, GemmSpec};
use scorecl_host::ops::pool;
use scorecl_host::{DType, Gpu, Tensor};

fn fixture() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/nonfinite/cases.safetensors");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn get(st: &SafeTensors, name: &str) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(
        st.tensor(name)
            .unwrap_or_else(|_| panic!("fixture lacks `{name}`"))
            .data(),
    )
}

/// NaN where PyTorch has NaN, the same infinity, else within `rel`.
fn same(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= rel * w.abs().max(1.0)
        };
        assert!(ok, "{what}[{i}]: got {g}, PyTorch {w}");
    }
}

fn up(gpu: &Gpu, v: &[f32]) -> Tensor {
    gpu.upload(v, &[v.len()]).unwrap()
}

fn out(gpu: &Gpu, n: usize) -> Tensor {
    gpu.tensor(&[n], DType::F32).unwrap()
}

#[test]
fn relu_and_its_gradient_keep_nan_as_pytorch() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (x, y, g, dx) = (
        get(&st, "relu.x"),
        get(&st, "relu.y"),
        get(&st, "relu.g"),
        get(&st, "relu.dx"),
    );
    let (a, b, ab) = (
        get(&st, "add_relu.a"),
        get(&st, "add_relu.b"),
        get(&st, "add_relu.y"),
    );
    same("cpu relu", &ew::cpu::relu(&x), &y, 0.0);
    same(
        "cpu relu_backward",
        &ew::cpu::relu_backward(&x, &g),
        &dx,
        0.0,
    );
    same("cpu add_relu", &ew::cpu::add_relu(&a, &b), &ab, 0.0);
    for gpu in gpus() {
        let name = gpu.backend_name();
        let (tx, tg, ta, tb) = (up(gpu, &x), up(gpu, &g), up(gpu, &a), up(gpu, &b));
        let (ty, tdx, tab) = (out(gpu, x.len()), out(gpu, x.len()), out(gpu, a.len()));
        let mut s = gpu.step("nonfinite relu");
        ew::relu(&mut s, &tx, &ty).unwrap();
        ew::relu_backward(&mut s, &tx, &tg, &tdx).unwrap();
        ew::add_relu(&mut s, &ta, &tb, &tab).unwrap();
        let (iy, idx, iab) = (s.readback(&ty), s.readback(&tdx), s.readback(&tab));
        let r = s.submit().unwrap();
        same(&format!("{name} relu"), &r.f32(iy)[..x.len()], &y, 0.0);
        same(
            &format!("{name} relu_backward"),
            &r.f32(idx)[..x.len()],
            &dx,
            0.0,
        );
        same(
            &format!("{name} add_relu"),
            &r.f32(iab)[..a.len()],
            &ab,
            0.0,
        );
    }
}

#[test]
fn max_pool_takes_nan_and_infinities_as_pytorch() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (x, y, idx) = (get(&st, "pool.x"), get(&st, "pool.y"), get(&st, "pool.idx"));
    let idx: Vec<u32> = idx.iter().map(|v| *v as u32).collect();
    let s = ConvShape {
        n: 1,
        cin: 2,
        h: 5,
        w: 5,
        cout: 2,
        k: 3,
        stride: 2,
        pad: 1,
    };
    let (cy, ca) = pool::cpu::maxpool(&x, &s);
    same("cpu maxpool", &cy, &y, 0.0);
    assert_eq!(ca, idx, "cpu maxpool argmax");
    for gpu in gpus() {
        let tx = up(gpu, &x);
        let ty = out(gpu, s.out_len());
        let ta = gpu.tensor(&[s.out_len()], DType::U32).unwrap();
        let mut st = gpu.step("nonfinite maxpool");
        pool::maxpool(&mut st, &tx, &s, &ty, &ta).unwrap();
        let (iy, ia) = (st.readback(&ty), st.readback(&ta));
        let r = st.submit().unwrap();
        same(
            &format!("{} maxpool", gpu.backend_name()),
            &r.f32(iy)[..s.out_len()],
            &y,
            0.0,
        );
        assert_eq!(
            &r.u32(ia)[..s.out_len()],
            &idx[..],
            "{} maxpool argmax",
            gpu.backend_name()
        );
    }
}

#[test]
fn fused_relu_of_gemm_and_batch_norm_keeps_nan_as_pytorch() {
    let bytes = fixture();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (a, b, bias, want) = (
        get(&st, "gemm.a"),
        get(&st, "gemm.b"),
        get(&st, "gemm.bias"),
        get(&st, "gemm.y"),
    );
    let spec = GemmSpec {
        relu: true,
        ..GemmSpec::new(3, 5, 4)
    };
    let mut c = vec![0.0f32; 15];
    gemm::cpu::gemm(&spec, &a, &b, Some(&bias), &mut c);
    same("cpu gemm+bias+relu", &c, &want, 1e-5);
    let (bx, mean, var, gamma, beta, bwant) = (
        get(&st, "bn.x"),
        get(&st, "bn.mean"),
        get(&st, "bn.var"),
        get(&st, "bn.gamma"),
        get(&st, "bn.beta"),
        get(&st, "bn.y"),
    );
    let bn = BnSpec {
        training: false,
        relu: true,
        ..BnSpec::new(2, 3, 4)
    };
    let f = batchnorm::cpu::forward(&bx, &gamma, &beta, &mean, &var, &bn);
    same("cpu batch norm + relu", &f.y, &bwant, 1e-5);
    for gpu in gpus() {
        let name = gpu.backend_name();
        let (ta, tb, tbias, tc) = (up(gpu, &a), up(gpu, &b), up(gpu, &bias), out(gpu, 15));
        let (tx, tg, tbe, tm, tv) = (
            up(gpu, &bx),
            up(gpu, &gamma),
            up(gpu, &beta),
            up(gpu, &mean),
            up(gpu, &var),
        );
        let (sm, si, ty) = (out(gpu, 3), out(gpu, 3), out(gpu, bx.len()));
        let t = BnTensors {
            gamma: &tg,
            beta: &tbe,
            running_mean: &tm,
            running_var: &tv,
            mean: &sm,
            invstd: &si,
        };
        let mut s = gpu.step("nonfinite fused relu");
        gemm::gemm(&mut s, &spec, &ta, &tb, Some(&tbias), &tc).unwrap();
        batchnorm::forward(&mut s, &tx, &t, &bn, &ty).unwrap();
        let (ic, iy) = (s.readback(&tc), s.readback(&ty));
        let r = s.submit().unwrap();
        same(
            &format!("{name} gemm+bias+relu"),
            &r.f32(ic)[..15],
            &want,
            1e-5,
        );
        same(
            &format!("{name} batch norm + relu"),
            &r.f32(iy)[..bx.len()],
            &bwant,
            1e-5,
        );
    }
}

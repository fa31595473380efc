//! Finite differences on a tiny conv → BatchNorm (training) → ReLU stack,
//! loss = Σ y·R: the GPU's analytic gradients for the weights, the input,
//! γ and β against Richardson-extrapolated central differences of the GPU's
//! own forward (loss summed in f64 on the CPU).
//!
//! Step h = 2e-3. Each forward is f32 (≈1e-7 relative per element), so the
//! loss carries ≈1e-6 of rounding and the extrapolated quotient ≈1e-3 at
//! most; each entry must satisfy |fd − analytic| ≤ 2e-3 + 2e-2·|analytic|.
//! β is +2.5, −2.5 and 0.2 for the three channels (all active, all dead,
//! mixed), and the data seed is the first whose pre-ReLU values all lie at
//! least 0.02 from the kink (a step of h moves them by ≈5e-3 at most),
//! where the loss is smooth.
mod common;

use common::normals;
use scorecl_host::ops::batchnorm::{self, BnSpec, BnTensors};
use scorecl_host::ops::conv::{self, ConvPrecision, ConvScratch, ConvShape};
use scorecl_host::ops::elementwise;
use scorecl_host::{DType, Gpu, Tensor};

const S: ConvShape = ConvShape {
    n: 2,
    cin: 2,
    h: 5,
    w: 5,
    cout: 3,
    k: 3,
    stride: 1,
    pad: 1,
};
const H: f32 = 2e-3;

struct Stack<'g> {
    gpu: &'g Gpu,
    scratch: ConvScratch,
    a: Tensor,
    y: Tensor,
    rm: Tensor,
    rv: Tensor,
    mean: Tensor,
    invstd: Tensor,
}

impl<'g> Stack<'g> {
    fn new(gpu: &'g Gpu) -> Self {
        let t = |n: usize| gpu.tensor(&[n], DType::F32).unwrap();
        Stack {
            gpu,
            scratch: ConvScratch::new(
                gpu,
                S.n * ConvScratch::per_image(gpu, &S, ConvPrecision::F32),
                S.weight_len(),
                ConvPrecision::F32,
            )
            .unwrap(),
            a: t(S.out_len()),
            y: t(S.out_len()),
            rm: gpu.zeros(&[S.cout]).unwrap(),
            rv: gpu.zeros(&[S.cout]).unwrap(),
            mean: t(S.cout),
            invstd: t(S.cout),
        }
    }

    /// y = relu(bn(conv(x, w))) (or without the ReLU).
    fn forward(&self, x: &[f32], w: &[f32], g: &[f32], b: &[f32], relu: bool) -> Vec<f32> {
        let up = |v: &[f32]| self.gpu.upload(v, &[v.len()]).unwrap();
        let (tx, tw, tg, tb) = (up(x), up(w), up(g), up(b));
        let mut s = self.gpu.step("fd forward");
        conv::conv2d(&mut s, &tx, &tw, &S, &self.scratch, &self.a).unwrap();
        let t = BnTensors {
            gamma: &tg,
            beta: &tb,
            running_mean: &self.rm,
            running_var: &self.rv,
            mean: &self.mean,
            invstd: &self.invstd,
        };
        batchnorm::forward(
            &mut s,
            &self.a,
            &t,
            &BnSpec {
                relu,
                ..BnSpec::new(S.n, S.cout, S.oh() * S.ow())
            },
            &self.y,
        )
        .unwrap();
        let i = s.readback(&self.y);
        s.submit().unwrap().f32(i)[..S.out_len()].to_vec()
    }
}

fn loss(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(a, b)| *a as f64 * *b as f64).sum()
}

#[test]
fn conv_bn_relu_gradients_match_finite_differences() {
    let Some(gpu) = common::gpu() else { return };
    let st = Stack::new(gpu);
    // The first seed whose pre-activations stay clear of the ReLU kink.
    let (x, w, g, b, r) = (0..50u64)
        .map(|seed| {
            let x = normals(seed * 10, S.in_len(), 1.0);
            let w = normals(seed * 10 + 1, S.weight_len(), 0.5);
            let g: Vec<f32> = normals(seed * 10 + 2, S.cout, 0.3)
                .iter()
                .map(|v| v + 1.0)
                .collect();
            let b = vec![2.5, -2.5, 0.2];
            let r = normals(seed * 10 + 4, S.out_len(), 1.0);
            (x, w, g, b, r)
        })
        .find(|(x, w, g, b, _)| st.forward(x, w, g, b, false).iter().all(|z| z.abs() > 0.02))
        .expect("a seed clear of the ReLU kink");
    // Analytic gradients on the GPU.
    let up = |v: &[f32]| gpu.upload(v, &[v.len()]).unwrap();
    let (tx, tw, tg, tb, tr) = (up(&x), up(&w), up(&g), up(&b), up(&r));
    let t = |n: usize| gpu.tensor(&[n], DType::F32).unwrap();
    let (db, da, dx, sums) = (t(S.out_len()), t(S.out_len()), t(S.in_len()), t(2 * S.cout));
    let (dw, dg, dbeta) = (
        gpu.zeros(&[S.weight_len()]).unwrap(),
        gpu.zeros(&[S.cout]).unwrap(),
        gpu.zeros(&[S.cout]).unwrap(),
    );
    let spec = BnSpec {
        relu: true,
        ..BnSpec::new(S.n, S.cout, S.oh() * S.ow())
    };
    let mut s = gpu.step("fd analytic");
    conv::conv2d(&mut s, &tx, &tw, &S, &st.scratch, &st.a).unwrap();
    let bt = BnTensors {
        gamma: &tg,
        beta: &tb,
        running_mean: &st.rm,
        running_var: &st.rv,
        mean: &st.mean,
        invstd: &st.invstd,
    };
    batchnorm::forward(&mut s, &st.a, &bt, &spec, &st.y).unwrap();
    elementwise::relu_backward(&mut s, &st.y, &tr, &db).unwrap();
    batchnorm::backward(
        &mut s,
        &st.a,
        &db,
        &bt,
        &BnSpec {
            relu: false,
            ..spec
        },
        &sums,
        &dg,
        &dbeta,
        &da,
    )
    .unwrap();
    conv::conv2d_backward(&mut s, &tx, &tw, &da, &S, &st.scratch, &dw, Some(&dx)).unwrap();
    let ids = [
        s.readback(&dw),
        s.readback(&dx),
        s.readback(&dg),
        s.readback(&dbeta),
    ];
    let out = s.submit().unwrap();
    let grads: Vec<Vec<f32>> = ids
        .iter()
        .zip([S.weight_len(), S.in_len(), S.cout, S.cout])
        .map(|(i, n)| out.f32(*i)[..n].to_vec())
        .collect();
    // Finite differences of each input of the stack.
    let names = ["weight", "input", "gamma", "beta"];
    for (which, analytic) in grads.iter().enumerate() {
        for i in 0..analytic.len() {
            let eval = |delta: f32| -> f64 {
                let (mut x, mut w, mut g, mut b) = (x.clone(), w.clone(), g.clone(), b.clone());
                match which {
                    0 => w[i] += delta,
                    1 => x[i] += delta,
                    2 => g[i] += delta,
                    _ => b[i] += delta,
                }
                loss(&st.forward(&x, &w, &g, &b, true), &r)
            };
            let central = |h: f32| (eval(h) - eval(-h)) / (2.0 * h as f64);
            let fd = (4.0 * central(H / 2.0) - central(H)) / 3.0;
            let a = analytic[i] as f64;
            assert!(
                (fd - a).abs() <= 2e-3 + 2e-2 * a.abs(),
                "{}[{i}]: analytic {a}, finite difference {fd}",
                names[which]
            );
        }
    }
}

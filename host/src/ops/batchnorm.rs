//! Batch normalisation on the GPU (`shaders/wgsl/batchnorm.wgsl`):
//! BatchNorm2d on [N, C, H·W] and BatchNorm1d on [N, C] (S = 1), training and
//! evaluation, affine or not, optionally fused with a ReLU. PyTorch
//! semantics: biased variance to normalise, unbiased in the running
//! variance, `running = (1 − momentum)·running + momentum·batch`.
//! CPU twin: [`cpu`]; tests: `host/tests/batchnorm.rs`.

use bytemuck::Zeroable;
use scorecl_shaders::BATCHNORM;

use crate::error::Result;
use crate::kernel_params;
use crate::step::{grid, Step};
use crate::tensor::Tensor;

/// Shape and constants of one batch-norm call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BnSpec {
    /// Batch size.
    pub n: usize,
    /// Channels (features).
    pub c: usize,
    /// Spatial size H·W (1 for BatchNorm1d).
    pub s: usize,
    /// Variance epsilon (1e-5).
    pub eps: f32,
    /// Running-statistics momentum (0.1).
    pub momentum: f32,
    /// Training (batch statistics) or evaluation (running statistics).
    pub training: bool,
    /// With γ and β.
    pub affine: bool,
    /// Fuse a ReLU after the normalisation (forward only).
    pub relu: bool,
}

impl BnSpec {
    /// PyTorch's defaults for a [n, c, s] input in training mode.
    pub fn new(n: usize, c: usize, s: usize) -> Self {
        BnSpec {
            n,
            c,
            s,
            eps: 1e-5,
            momentum: 0.1,
            training: true,
            affine: true,
            relu: false,
        }
    }

    fn len(&self) -> usize {
        self.n * self.c * self.s
    }
}

/// The tensors of one batch-norm layer.
pub struct BnTensors<'a> {
    /// γ (c); ignored when not affine.
    pub gamma: &'a Tensor,
    /// β (c); ignored when not affine.
    pub beta: &'a Tensor,
    /// Running mean (c), updated in training.
    pub running_mean: &'a Tensor,
    /// Running variance (c), updated in training.
    pub running_var: &'a Tensor,
    /// Saved mean (c), written by the forward, read by the backward.
    pub mean: &'a Tensor,
    /// Saved 1/sqrt(var + eps) (c), as `mean`.
    pub invstd: &'a Tensor,
}

kernel_params! {
    struct Params {
        n: u32,
        c: u32,
        s: u32,
        ranks: u32,
        eps: f32,
        momentum: f32,
        _p1: [u32; 2],
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

fn params(b: &BnSpec) -> Params {
    Params {
        n: b.n as u32,
        c: b.c as u32,
        s: b.s as u32,
        eps: b.eps,
        momentum: b.momentum,
        ..Zeroable::zeroed()
    }
}

fn constants(b: &BnSpec) -> [(&'static str, f64); 3] {
    [
        ("AFFINE", b.affine as u8 as f64),
        ("RELU", b.relu as u8 as f64),
        ("TRAINING", b.training as u8 as f64),
    ]
}

/// `y = bn(x)` (then ReLU if `b.relu`); in training also the saved
/// statistics and the running-statistics update.
pub fn forward(step: &mut Step, x: &Tensor, t: &BnTensors, b: &BnSpec, y: &Tensor) -> Result<()> {
    forward_impl(step, x, t, b, None, y)
}

/// `y = bn(x) + residual` (then ReLU if `b.relu`) in one pass over the
/// activations: a ResNet block's second batch norm, shortcut addition and
/// ReLU. Statistics as [`forward`]; the backward is [`backward`] applied to
/// the ReLU's backward of `dy` (the residual's gradient is that same
/// masked `dy`).
pub fn forward_add(
    step: &mut Step,
    x: &Tensor,
    t: &BnTensors,
    b: &BnSpec,
    residual: &Tensor,
    y: &Tensor,
) -> Result<()> {
    residual.expect_len("batchnorm residual", b.len())?;
    forward_impl(step, x, t, b, Some(residual), y)
}

fn forward_impl(
    step: &mut Step,
    x: &Tensor,
    t: &BnTensors,
    b: &BnSpec,
    residual: Option<&Tensor>,
    y: &Tensor,
) -> Result<()> {
    x.expect_len("batchnorm input", b.len())?;
    y.expect_len("batchnorm output", b.len())?;
    for (what, v) in [
        ("batchnorm running_mean", t.running_mean),
        ("batchnorm running_var", t.running_var),
    ] {
        v.expect_len(what, b.c)?;
    }
    let gpu = step.gpu();
    let defines = gpu.subgroup_defines();
    let p = params(b);
    let c = constants(b);
    let sync = step.sync_batchnorm().filter(|l| l.size() > 1).cloned();
    if let (true, Some(comm)) = (b.training, sync) {
        // Synchronised: each rank's mean and M2, combined over the ranks.
        let k = gpu.kernel(&BATCHNORM, "bn_stats_partial", defines, &c)?;
        step.dispatch(
            &k,
            &p,
            crate::bind![x, mean = t.mean, invstd = t.invstd],
            grid(b.c, 1),
        )?;
        let spec = *b;
        let tensors = [t.mean, t.invstd, t.running_mean, t.running_var];
        step.host("synchronise batch statistics", &tensors, move |v| {
            let mut mine = v[0].clone();
            mine.extend_from_slice(&v[1]);
            let all = comm.all_gather(&mine)?;
            let [mean, invstd, rm, rv] = v else {
                unreachable!("four tensors")
            };
            combine_stats(&spec, &all, mean, invstd, rm, rv);
            Ok(())
        })?;
    } else if b.training {
        let k = gpu.kernel(&BATCHNORM, "bn_stats", defines, &c)?;
        step.dispatch(
            &k,
            &p,
            crate::bind![
                x,
                mean = t.mean,
                invstd = t.invstd,
                running_mean = t.running_mean,
                running_var = t.running_var
            ],
            grid(b.c, 1),
        )?;
    } else {
        let k = gpu.kernel(&BATCHNORM, "bn_eval_stats", defines, &c)?;
        step.dispatch(
            &k,
            &p,
            crate::bind![
                mean = t.mean,
                invstd = t.invstd,
                running_mean = t.running_mean,
                running_var = t.running_var
            ],
            [b.c.div_ceil(64) as u32, 1, 1],
        )?;
    }
    match residual {
        None => {
            let k = gpu.kernel(&BATCHNORM, "bn_apply", defines, &c)?;
            step.dispatch(
                &k,
                &p,
                crate::bind![
                    x,
                    gamma = t.gamma,
                    beta = t.beta,
                    y,
                    mean_in = t.mean,
                    invstd_in = t.invstd
                ],
                grid(b.len(), 256),
            )
        }
        Some(r) => {
            let k = gpu.kernel(&BATCHNORM, "bn_apply_add", defines, &c)?;
            step.dispatch(
                &k,
                &p,
                crate::bind![
                    x,
                    gamma = t.gamma,
                    beta = t.beta,
                    y,
                    mean_in = t.mean,
                    invstd_in = t.invstd,
                    residual = r
                ],
                grid(b.len(), 256),
            )
        }
    }
}

/// A synchronised batch norm's statistics from every rank's `bn_stats_partial`
/// (`all`: per rank, its c means then its c sums of squared deviations M2,
/// over n·s values each): the mean and biased variance of all ranks' values
/// (Chan et al.'s pairwise combination, in f64), then `invstd` and the
/// running statistics with `bn_stats`'s f32 expressions over the total
/// count.
pub(crate) fn combine_stats(
    b: &BnSpec,
    all: &[f32],
    mean: &mut [f32],
    invstd: &mut [f32],
    rm: &mut [f32],
    rv: &mut [f32],
) {
    let c = b.c;
    let ranks = all.len() / (2 * c).max(1);
    let cnt = (b.n * b.s) as f64;
    let total = (b.n * b.s * ranks) as u64;
    for ch in 0..c {
        let mu_r = |r: usize| all[r * 2 * c + ch] as f64;
        let m2_r = |r: usize| all[r * 2 * c + c + ch] as f64;
        let mu = (0..ranks).map(mu_r).sum::<f64>() / ranks as f64;
        let m2: f64 = (0..ranks)
            .map(|r| m2_r(r) + cnt * (mu_r(r) - mu) * (mu_r(r) - mu))
            .sum();
        let mu = mu as f32;
        let var_b = (m2 / total as f64) as f32;
        mean[ch] = mu;
        invstd[ch] = 1.0 / (var_b + b.eps).sqrt();
        let unbiased = var_b * total as f32 / (total.max(2) - 1) as f32;
        rm[ch] = (1.0 - b.momentum) * rm[ch] + b.momentum * mu;
        rv[ch] = (1.0 - b.momentum) * rv[ch] + b.momentum * unbiased;
    }
}

/// Backward of [`forward`] (without the fused ReLU: apply its backward to
/// `dy` first, or use [`backward_relu`]): `dx`, and with affine
/// `dgamma += Σ dy·x̂`, `dbeta += Σ dy`. `sums` (2c) is scratch.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    step: &mut Step,
    x: &Tensor,
    dy: &Tensor,
    t: &BnTensors,
    b: &BnSpec,
    sums: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    backward_impl(step, x, dy, None, t, b, sums, dgamma, dbeta, dx)
}

/// [`backward`] of a batch norm followed by a ReLU whose output is
/// `y_relu`, from the gradient `dy` of the ReLU's output: the ReLU's
/// backward (`dy·[y_relu > 0]`) is applied as `dy` is read, so no masked
/// gradient is written.
#[allow(clippy::too_many_arguments)]
pub fn backward_relu(
    step: &mut Step,
    x: &Tensor,
    dy: &Tensor,
    y_relu: &Tensor,
    t: &BnTensors,
    b: &BnSpec,
    sums: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    y_relu.expect_len("batchnorm ReLU output", b.len())?;
    backward_impl(step, x, dy, Some(y_relu), t, b, sums, dgamma, dbeta, dx)
}

#[allow(clippy::too_many_arguments)]
fn backward_impl(
    step: &mut Step,
    x: &Tensor,
    dy: &Tensor,
    y_relu: Option<&Tensor>,
    t: &BnTensors,
    b: &BnSpec,
    sums: &Tensor,
    dgamma: &Tensor,
    dbeta: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    dy.expect_len("batchnorm output gradient", b.len())?;
    dx.expect_len("batchnorm input gradient", b.len())?;
    sums.expect_len("batchnorm sums", 2 * b.c)?;
    let gpu = step.gpu();
    let defines = gpu.subgroup_defines();
    let mut p = params(b);
    let c = constants(b);
    let sync = step
        .sync_batchnorm()
        .filter(|l| b.training && l.size() > 1)
        .cloned();
    let (reduce, apply) = match y_relu {
        None => ("bn_backward_reduce", "bn_backward_apply"),
        Some(_) => ("bn_backward_reduce_relu", "bn_backward_apply_relu"),
    };
    let mut red: Vec<(&str, &Tensor)> = crate::bind![
        x,
        dy,
        sums,
        dgamma,
        dbeta,
        mean_in = t.mean,
        invstd_in = t.invstd
    ]
    .to_vec();
    let mut app: Vec<(&str, &Tensor)> = crate::bind![
        x,
        gamma = t.gamma,
        dy,
        sums,
        dx,
        mean_in = t.mean,
        invstd_in = t.invstd
    ]
    .to_vec();
    if let Some(y) = y_relu {
        red.push(("y_relu", y));
        app.push(("y_relu", y));
    }
    if let Some(comm) = sync {
        // Synchronised: the two sums over all ranks between the passes.
        p.ranks = comm.size() as u32;
        let k = gpu.kernel(&BATCHNORM, reduce, defines, &c)?;
        step.dispatch(&k, &p, &red, grid(b.c, 1))?;
        crate::dist::all_reduce(step, &comm, "synchronise batch-norm sums", &[sums], 1.0)?;
        let k = gpu.kernel(&BATCHNORM, apply, defines, &c)?;
        return step.dispatch(&k, &p, &app, grid(b.len(), 256));
    }
    if gpu.is_native() && b.s >= 16 {
        // Both passes a channel at a time, the second while the channel's
        // planes are in cache (the same sums and expressions as the pair).
        use crate::kernel::Binding::{Read, ReadWrite};
        let k = gpu.native_kernel(
            "bn_backward_fused",
            &[
                ("x", Read),
                ("gamma", Read),
                ("dy", Read),
                ("sums", ReadWrite),
                ("dgamma", ReadWrite),
                ("dbeta", ReadWrite),
                ("dx", ReadWrite),
                ("mean_in", Read),
                ("invstd_in", Read),
                ("y_relu", Read),
            ],
            native::backward_fused,
        )?;
        let p = native::Fused {
            n: b.n as u32,
            c: b.c as u32,
            s: b.s as u32,
            affine: b.affine as u32,
            training: b.training as u32,
            relu: y_relu.is_some() as u32,
            _pad: [0; 2],
        };
        let y = y_relu.unwrap_or(gpu.dummy()?);
        let all = crate::bind![
            x,
            gamma = t.gamma,
            dy,
            sums,
            dgamma,
            dbeta,
            dx,
            mean_in = t.mean,
            invstd_in = t.invstd,
            y_relu = y
        ];
        return step.dispatch(&k, &p, all, [1, 1, 1]);
    }
    let k = gpu.kernel(&BATCHNORM, reduce, defines, &c)?;
    step.dispatch(&k, &p, &red, grid(b.c, 1))?;
    let k = gpu.kernel(&BATCHNORM, apply, defines, &c)?;
    step.dispatch(&k, &p, &app, grid(b.len(), 256))
}

/// CPU twin (f64).
#[cfg(feature = "reference")]
pub mod cpu {
    use super::BnSpec;

    /// Outputs of [`forward`].
    pub struct Forward {
        /// Normalised output.
        pub y: Vec<f32>,
        /// Batch (or running) mean.
        pub mean: Vec<f32>,
        /// 1/sqrt(var + eps).
        pub invstd: Vec<f32>,
        /// Updated running mean.
        pub running_mean: Vec<f32>,
        /// Updated running variance.
        pub running_var: Vec<f32>,
    }

    fn idx(b: &BnSpec, n: usize, c: usize, s: usize) -> usize {
        (n * b.c + c) * b.s + s
    }

    /// PyTorch's batch norm.
    pub fn forward(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        rm: &[f32],
        rv: &[f32],
        b: &BnSpec,
    ) -> Forward {
        let cnt = (b.n * b.s) as f64;
        let mut f = Forward {
            y: vec![0.0; x.len()],
            mean: vec![0.0; b.c],
            invstd: vec![0.0; b.c],
            running_mean: rm.to_vec(),
            running_var: rv.to_vec(),
        };
        for c in 0..b.c {
            let vals: Vec<f64> = (0..b.n)
                .flat_map(|n| (0..b.s).map(move |s| (n, s)))
                .map(|(n, s)| x[idx(b, n, c, s)] as f64)
                .collect();
            let (mu, var) = if b.training {
                let mu = vals.iter().sum::<f64>() / cnt;
                let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / cnt;
                let m = b.momentum as f64;
                f.running_mean[c] = ((1.0 - m) * rm[c] as f64 + m * mu) as f32;
                f.running_var[c] =
                    ((1.0 - m) * rv[c] as f64 + m * var * cnt / (cnt - 1.0).max(1.0)) as f32;
                (mu, var)
            } else {
                (rm[c] as f64, rv[c] as f64)
            };
            let is = 1.0 / (var + b.eps as f64).sqrt();
            f.mean[c] = mu as f32;
            f.invstd[c] = is as f32;
            for n in 0..b.n {
                for s in 0..b.s {
                    let i = idx(b, n, c, s);
                    let mut v = (x[i] as f64 - mu) * is;
                    if b.affine {
                        v = v * gamma[c] as f64 + beta[c] as f64;
                    }
                    if b.relu {
                        v = if v.is_nan() { v } else { v.max(0.0) };
                    }
                    f.y[i] = v as f32;
                }
            }
        }
        f
    }

    /// Gradients (dx, dγ, dβ) of [`forward`] (without the ReLU).
    pub fn backward(
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        f: &Forward,
        b: &BnSpec,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let cnt = (b.n * b.s) as f64;
        let mut dx = vec![0.0f32; x.len()];
        let (mut dg, mut db) = (vec![0.0f32; b.c], vec![0.0f32; b.c]);
        for c in 0..b.c {
            let (mu, is) = (f.mean[c] as f64, f.invstd[c] as f64);
            let g = if b.affine { gamma[c] as f64 } else { 1.0 };
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for n in 0..b.n {
                for s in 0..b.s {
                    let i = idx(b, n, c, s);
                    s1 += dy[i] as f64;
                    s2 += dy[i] as f64 * (x[i] as f64 - mu) * is;
                }
            }
            dg[c] = s2 as f32;
            db[c] = s1 as f32;
            for n in 0..b.n {
                for s in 0..b.s {
                    let i = idx(b, n, c, s);
                    let xhat = (x[i] as f64 - mu) * is;
                    let v = if b.training {
                        g * is * (dy[i] as f64 - s1 / cnt - xhat * s2 / cnt)
                    } else {
                        g * is * dy[i] as f64
                    };
                    dx[i] = v as f32;
                }
            }
        }
        (dx, dg, db)
    }
}

/// Native CPU twins of the batch-norm kernels: statistics and reductions a
/// channel per parallel task, the elementwise passes a plane per task.
// `!(a > b)` on purpose: NaN takes the same branch as in the WGSL.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, sum, sum_slice, Invocation, KernelFn, SharedMut};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "bn_stats" => stats,
            "bn_stats_partial" => stats_partial,
            "bn_eval_stats" => eval_stats,
            "bn_apply" => |inv| apply(inv, false),
            "bn_apply_add" => |inv| apply(inv, true),
            "bn_backward_reduce" => |inv| backward_reduce(inv, false),
            "bn_backward_reduce_relu" => |inv| backward_reduce(inv, true),
            "bn_backward_apply" => |inv| backward_apply(inv, false),
            "bn_backward_apply_relu" => |inv| backward_apply(inv, true),
            _ => return None,
        })
    }

    /// Σ over channel c's n·s values of f(flat index): each sample's plane
    /// summed (eight lanes), the planes' sums added in f64.
    fn channel_sum(p: &Params, c: usize, f: impl Fn(usize) -> f32) -> f32 {
        let (n, s, cc) = (p.n as usize, p.s as usize, p.c as usize);
        if s == 1 {
            return sum(n, |j| f(j * cc + c));
        }
        let mut total = 0.0f64;
        for b in 0..n {
            let base = (b * cc + c) * s;
            total += sum(s, |j| f(base + j)) as f64;
        }
        total as f32
    }

    /// [`channel_sum`] of `f(x[i])`, a plane at a time on slices (the
    /// same order and bits; the lanes vectorise).
    fn channel_sum_of(p: &Params, c: usize, x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
        let (n, s, cc) = (p.n as usize, p.s as usize, p.c as usize);
        if s == 1 {
            return sum(n, |j| f(x[j * cc + c]));
        }
        let mut total = 0.0f64;
        for b in 0..n {
            let base = (b * cc + c) * s;
            total += sum_slice(&x[base..base + s], &f) as f64;
        }
        total as f32
    }

    fn stats(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let x = inv.f32(0)?;
        let (mean, invstd) = (inv.f32_mut(1)?, inv.f32_mut(2)?);
        let (rm, rv) = (inv.f32_mut(3)?, inv.f32_mut(4)?);
        let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
        need(
            inv,
            &[
                ("x", x.len(), n * c * s),
                ("mean", mean.len(), c),
                ("invstd", invstd.len(), c),
                ("running_mean", rm.len(), c),
                ("running_var", rv.len(), c),
            ],
        )?;
        let cnt = n * s;
        let (invstd, rm, rv) = (
            SharedMut::new(invstd),
            SharedMut::new(rm),
            SharedMut::new(rv),
        );
        rows_mut(mean, c, 1, 2 * cnt, |ch, m| {
            let mu = channel_sum_of(&p, ch, x, |v| v) / cnt as f32;
            let var_b = channel_sum_of(&p, ch, x, |v| (v - mu) * (v - mu)) / cnt as f32;
            m[0] = mu;
            invstd.set(ch, 1.0 / (var_b + p.eps).sqrt());
            let unbiased = var_b * cnt as f32 / (cnt.max(2) - 1) as f32;
            rm.set(ch, (1.0 - p.momentum) * rm.get(ch) + p.momentum * mu);
            rv.set(ch, (1.0 - p.momentum) * rv.get(ch) + p.momentum * unbiased);
        });
        Ok(())
    }

    /// `bn_stats_partial`: the rank's mean into `mean`, its sum of squared
    /// deviations into `invstd` (the sums as [`stats`] takes them).
    fn stats_partial(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let x = inv.f32(0)?;
        let (mean, m2) = (inv.f32_mut(1)?, inv.f32_mut(2)?);
        let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
        need(
            inv,
            &[
                ("x", x.len(), n * c * s),
                ("mean", mean.len(), c),
                ("invstd", m2.len(), c),
            ],
        )?;
        let cnt = n * s;
        let m2 = SharedMut::new(m2);
        rows_mut(mean, c, 1, 2 * cnt, |ch, m| {
            let mu = channel_sum_of(&p, ch, x, |v| v) / cnt as f32;
            m[0] = mu;
            m2.set(ch, channel_sum_of(&p, ch, x, |v| (v - mu) * (v - mu)));
        });
        Ok(())
    }

    fn eval_stats(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (mean, invstd) = (inv.f32_mut(0)?, inv.f32_mut(1)?);
        let (rm, rv) = (inv.f32_mut(2)?, inv.f32_mut(3)?);
        let c = p.c as usize;
        need(
            inv,
            &[
                ("mean", mean.len(), c),
                ("invstd", invstd.len(), c),
                ("running_mean", rm.len(), c),
                ("running_var", rv.len(), c),
            ],
        )?;
        for ch in 0..c {
            mean[ch] = rm[ch];
            invstd[ch] = 1.0 / (rv[ch] + p.eps).sqrt();
        }
        Ok(())
    }

    /// `f(channel, plane_index_base, plane)` over the [n·c] planes of s
    /// elements of `out`.
    fn planes(p: &Params, out: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync + Send) {
        let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
        if s >= 16 {
            rows_mut(out, n * c, s, s, |pl, o| f(pl % c, pl * s, o));
        } else {
            // BatchNorm1d (s = 1): a sample's row of c channels per task.
            rows_mut(out, n, c * s, c * s, |row, o| {
                for (k, ch) in o.chunks_mut(s.max(1)).enumerate() {
                    f(k, (row * c + k) * s, ch);
                }
            });
        }
    }

    fn apply(inv: &Invocation, add: bool) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, gamma, beta) = (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?);
        let y = inv.f32_mut(3)?;
        let (mean, invstd) = (inv.f32(4)?, inv.f32(5)?);
        let residual = if add { Some(inv.f32(6)?) } else { None };
        let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
        let len = n * c * s;
        let (affine, relu) = (inv.flag("AFFINE", true), inv.flag("RELU", false));
        need(
            inv,
            &[
                ("x", x.len(), len),
                ("y", y.len(), len),
                ("mean", mean.len(), c),
                ("invstd", invstd.len(), c),
            ],
        )?;
        if affine {
            need(inv, &[("gamma", gamma.len(), c), ("beta", beta.len(), c)])?;
        }
        if let Some(r) = residual {
            need(inv, &[("residual", r.len(), len)])?;
        }
        // One loop per combination of the flags, on slices, so that each
        // vectorises (the same operations in the same order per element).
        let f = match (affine, residual.is_some(), relu) {
            (false, false, false) => apply_plane::<false, false, false>,
            (false, false, true) => apply_plane::<false, false, true>,
            (false, true, false) => apply_plane::<false, true, false>,
            (false, true, true) => apply_plane::<false, true, true>,
            (true, false, false) => apply_plane::<true, false, false>,
            (true, false, true) => apply_plane::<true, false, true>,
            (true, true, false) => apply_plane::<true, true, false>,
            (true, true, true) => apply_plane::<true, true, true>,
        };
        planes(&p, &mut y[..len], |ch, base, o| {
            let gb = if affine {
                (gamma[ch], beta[ch])
            } else {
                (1.0, 0.0)
            };
            let xs = &x[base..base + o.len()];
            let rs = residual.map_or(xs, |r| &r[base..base + o.len()]);
            f(xs, rs, o, (mean[ch], invstd[ch]), gb);
        });
        Ok(())
    }

    /// `y = (x − μ)·invstd`, then `·γ + β` (AFFINE), `+ r` (RESIDUAL) and
    /// the ReLU (RELU), element by element over one plane.
    fn apply_plane<const AFFINE: bool, const RESIDUAL: bool, const RELU: bool>(
        x: &[f32],
        r: &[f32],
        y: &mut [f32],
        (mu, is): (f32, f32),
        (g, b): (f32, f32),
    ) {
        let (x, r) = (&x[..y.len()], &r[..y.len()]);
        for ((yv, &xv), &rv) in y.iter_mut().zip(x).zip(r) {
            let mut v = (xv - mu) * is;
            if AFFINE {
                v = v * g + b;
            }
            if RESIDUAL {
                v += rv;
            }
            if RELU {
                v = scorecl_core::relu(v);
            }
            *yv = v;
        }
    }

    fn backward_reduce(inv: &Invocation, relu: bool) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, dy) = (inv.f32(0)?, inv.f32(1)?);
        let (sums, dgamma, dbeta) = (inv.f32_mut(2)?, inv.f32_mut(3)?, inv.f32_mut(4)?);
        let (mean, invstd) = (inv.f32(5)?, inv.f32(6)?);
        let y_relu = if relu { Some(inv.f32(7)?) } else { None };
        let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
        let len = n * c * s;
        let affine = inv.flag("AFFINE", true);
        need(
            inv,
            &[
                ("x", x.len(), len),
                ("dy", dy.len(), len),
                ("sums", sums.len(), 2 * c),
                ("mean", mean.len(), c),
                ("invstd", invstd.len(), c),
            ],
        )?;
        if affine {
            need(
                inv,
                &[("dgamma", dgamma.len(), c), ("dbeta", dbeta.len(), c)],
            )?;
        }
        if let Some(y) = y_relu {
            need(inv, &[("y_relu", y.len(), len)])?;
        }
        let g = |i: usize| match y_relu {
            Some(y) if !scorecl_core::relu_passes(y[i]) => 0.0,
            _ => dy[i],
        };
        let mut both = vec![0.0f32; 2 * c];
        rows_mut(&mut both, c, 2, 2 * n * s, |ch, o| {
            let (mu, is) = (mean[ch], invstd[ch]);
            if s == 1 {
                o[0] = channel_sum(&p, ch, g);
                o[1] = channel_sum(&p, ch, |i| g(i) * (x[i] - mu) * is);
                return;
            }
            (o[0], o[1]) = channel_grad_sums((n, c, s), ch, x, dy, y_relu, mu, is);
        });
        for ch in 0..c {
            let (s1, s2) = (both[2 * ch], both[2 * ch + 1]);
            sums[ch] = s1;
            sums[c + ch] = s2;
            if affine {
                dbeta[ch] += s1;
                dgamma[ch] += s2;
            }
        }
        Ok(())
    }

    crate::kernel_params! {
        /// Parameters of [`backward_fused`] (native only).
        pub(crate) struct Fused {
            pub(crate) n: u32,
            pub(crate) c: u32,
            pub(crate) s: u32,
            pub(crate) affine: u32,
            pub(crate) training: u32,
            pub(crate) relu: u32,
            pub(crate) _pad: [u32; 2],
        }
    }

    /// `bn_backward_reduce(_relu)` then `bn_backward_apply(_relu)` a
    /// channel per task (planes of s ≥ 16): the channel's two sums, as
    /// [`backward_reduce`] adds them, then its planes of `dx`, as
    /// [`backward_apply`] writes them. Bindings: x, γ, dy, sums, dγ, dβ,
    /// dx, mean, invstd, y_relu.
    pub(crate) fn backward_fused(inv: &Invocation) -> Result<()> {
        let f: Fused = inv.params()?;
        let (x, gamma, dy) = (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?);
        let (sums, dgamma, dbeta) = (inv.f32_mut(3)?, inv.f32_mut(4)?, inv.f32_mut(5)?);
        let dx = inv.f32_mut(6)?;
        let (mean, invstd) = (inv.f32(7)?, inv.f32(8)?);
        let (n, c, s) = (f.n as usize, f.c as usize, f.s as usize);
        let len = n * c * s;
        let (affine, training) = (f.affine != 0, f.training != 0);
        let y_relu = if f.relu != 0 { Some(inv.f32(9)?) } else { None };
        need(
            inv,
            &[
                ("x", x.len(), len),
                ("dy", dy.len(), len),
                ("sums", sums.len(), 2 * c),
                ("dx", dx.len(), len),
                ("mean", mean.len(), c),
                ("invstd", invstd.len(), c),
            ],
        )?;
        if affine {
            need(
                inv,
                &[
                    ("gamma", gamma.len(), c),
                    ("dgamma", dgamma.len(), c),
                    ("dbeta", dbeta.len(), c),
                ],
            )?;
        }
        if let Some(y) = y_relu {
            need(inv, &[("y_relu", y.len(), len)])?;
        }
        let inv_cnt = 1.0 / (n * s) as f32;
        let (sums, dgamma, dbeta, dx) = (
            SharedMut::new(sums),
            SharedMut::new(dgamma),
            SharedMut::new(dbeta),
            SharedMut::new(&mut dx[..len]),
        );
        crate::native::for_each(c, 3 * n * s, |ch| {
            // SAFETY (set, slice): task ch owns channel ch's sums,
            // gradients and planes.
            let (mu, is) = (mean[ch], invstd[ch]);
            let plane = |b: usize| (b * c + ch) * s..(b * c + ch + 1) * s;
            let (s1, s2) = channel_grad_sums((n, c, s), ch, x, dy, y_relu, mu, is);
            sums.set(ch, s1);
            sums.set(c + ch, s2);
            if affine {
                dbeta.set(ch, dbeta.get(ch) + s1);
                dgamma.set(ch, dgamma.get(ch) + s2);
            }
            let k = if affine { is * gamma[ch] } else { is };
            let dx_plane = dx_plane_for(training, y_relu.is_some());
            for b in 0..n {
                let r = plane(b);
                let o = dx.slice(r.start, s);
                let (xs, ds) = (&x[r.clone()], &dy[r.clone()]);
                let ys = y_relu.map_or(ds, |y| &y[r]);
                dx_plane(o, xs, ds, ys, (mu, is, k), (s1, s2, inv_cnt));
            }
        });
        Ok(())
    }

    /// Channel `ch`'s Σ g and Σ g·(x − μ)·invstd over its n planes of s
    /// elements ([`plane_sums`] per plane, the planes added in f64: the
    /// order and bits of [`channel_sum`]).
    #[allow(clippy::too_many_arguments)]
    fn channel_grad_sums(
        (n, c, s): (usize, usize, usize),
        ch: usize,
        x: &[f32],
        dy: &[f32],
        y_relu: Option<&[f32]>,
        mu: f32,
        is: f32,
    ) -> (f32, f32) {
        let (mut t1, mut t2) = (0.0f64, 0.0f64);
        for b in 0..n {
            let r = (b * c + ch) * s..(b * c + ch + 1) * s;
            let y = y_relu.map(|y| &y[r.clone()]);
            let (p1, p2) = plane_sums(&x[r.clone()], &dy[r], y, mu, is);
            t1 += p1 as f64;
            t2 += p2 as f64;
        }
        (t1 as f32, t2 as f32)
    }

    /// A plane of the input gradient: [`dx_plane`]'s loop for `training`
    /// and `relu`.
    type DxPlane = fn(&mut [f32], &[f32], &[f32], &[f32], (f32, f32, f32), (f32, f32, f32));

    fn dx_plane_for(training: bool, relu: bool) -> DxPlane {
        match (training, relu) {
            (false, false) => dx_plane::<false, false>,
            (false, true) => dx_plane::<false, true>,
            (true, false) => dx_plane::<true, false>,
            (true, true) => dx_plane::<true, true>,
        }
    }

    /// One plane of the input gradient: `k·(g − s1/cnt − x̂·s2/cnt)`
    /// (TRAINING) or `k·g`, g = `dy` masked by the ReLU output `y` (RELU);
    /// one loop per combination, on slices, so that each vectorises.
    #[inline(always)]
    fn dx_plane<const TRAINING: bool, const RELU: bool>(
        o: &mut [f32],
        xs: &[f32],
        ds: &[f32],
        ys: &[f32],
        (mu, is, k): (f32, f32, f32),
        (s1, s2, inv_cnt): (f32, f32, f32),
    ) {
        let n = o.len();
        let (xs, ds, ys) = (&xs[..n], &ds[..n], &ys[..n]);
        let a1 = s1 * inv_cnt;
        for (((d, &xv), &dv), &yv) in o.iter_mut().zip(xs).zip(ds).zip(ys) {
            let gi = masked(dv, yv, RELU);
            *d = if TRAINING {
                let xhat = (xv - mu) * is;
                k * (gi - a1 - xhat * s2 * inv_cnt)
            } else {
                k * gi
            };
        }
    }

    /// `dy` through the ReLU whose output is `y` (when `relu`).
    #[inline(always)]
    fn masked(dy: f32, y: f32, relu: bool) -> f32 {
        if relu && !scorecl_core::relu_passes(y) {
            0.0
        } else {
            dy
        }
    }

    /// Σ g and Σ g·(x − μ)·invstd over one plane (g = `dy` masked by the
    /// ReLU output `y`), each in [`crate::native::sum`]'s order (eight
    /// lanes per block of 1024, blocks in f64), so the same bits as
    /// [`channel_sum`] gives plane by plane; on slices, so that it
    /// vectorises.
    fn plane_sums(x: &[f32], dy: &[f32], y: Option<&[f32]>, mu: f32, is: f32) -> (f32, f32) {
        let relu = y.is_some();
        let y = y.unwrap_or(dy);
        let (mut t1, mut t2) = (0.0f64, 0.0f64);
        for ((xb, db), yb) in x.chunks(1024).zip(dy.chunks(1024)).zip(y.chunks(1024)) {
            let (mut l1, mut l2) = ([0.0f32; 8], [0.0f32; 8]);
            let full = xb.len() / 8 * 8;
            for ((xc, dc), yc) in xb[..full]
                .chunks_exact(8)
                .zip(db[..full].chunks_exact(8))
                .zip(yb[..full].chunks_exact(8))
            {
                for l in 0..8 {
                    let g = masked(dc[l], yc[l], relu);
                    l1[l] += g;
                    l2[l] += g * (xc[l] - mu) * is;
                }
            }
            for l in 0..xb.len() - full {
                let g = masked(db[full + l], yb[full + l], relu);
                l1[l] += g;
                l2[l] += g * (xb[full + l] - mu) * is;
            }
            let fold =
                |l: [f32; 8]| ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
            t1 += fold(l1) as f64;
            t2 += fold(l2) as f64;
        }
        (t1 as f32, t2 as f32)
    }

    fn backward_apply(inv: &Invocation, relu: bool) -> Result<()> {
        let p: Params = inv.params()?;
        let (x, gamma, dy) = (inv.f32(0)?, inv.f32(1)?, inv.f32(2)?);
        let (sums, dx) = (inv.f32_mut(3)?, inv.f32_mut(4)?);
        let (mean, invstd) = (inv.f32(5)?, inv.f32(6)?);
        let y_relu = if relu { Some(inv.f32(7)?) } else { None };
        let (n, c, s) = (p.n as usize, p.c as usize, p.s as usize);
        let len = n * c * s;
        let (affine, training) = (inv.flag("AFFINE", true), inv.flag("TRAINING", true));
        need(
            inv,
            &[
                ("x", x.len(), len),
                ("dy", dy.len(), len),
                ("sums", sums.len(), 2 * c),
                ("dx", dx.len(), len),
                ("mean", mean.len(), c),
                ("invstd", invstd.len(), c),
            ],
        )?;
        if affine {
            need(inv, &[("gamma", gamma.len(), c)])?;
        }
        if let Some(y) = y_relu {
            need(inv, &[("y_relu", y.len(), len)])?;
        }
        let sums = &*sums;
        let inv_cnt = 1.0 / ((n * s) as f32 * p.ranks.max(1) as f32);
        planes(&p, &mut dx[..len], |ch, base, o| {
            let is = invstd[ch];
            let k = if affine { is * gamma[ch] } else { is };
            let (mu, s1, s2) = (mean[ch], sums[ch], sums[c + ch]);
            let r = base..base + o.len();
            let (xs, ds) = (&x[r.clone()], &dy[r.clone()]);
            let ys = y_relu.map_or(ds, |y| &y[r]);
            dx_plane_for(training, y_relu.is_some())(o, xs, ds, ys, (mu, is, k), (s1, s2, inv_cnt));
        });
        Ok(())
    }
}

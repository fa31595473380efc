//! Weighted k-NN on the GPU (`shaders/wgsl/knn.wgsl`). CPU twin:
//! scorecl-core's `knn::predict`; test: `host/tests/knn.rs`.
//!
//! Features are L2-normalised on the GPU (`rows::l2norm`, as the core's
//! `max(‖x‖, 1e-12)`); cosine similarities of a tile of test rows against
//! a chunk of training rows come from one GEMM; `knn_merge` keeps each
//! test row's k best across chunks (the core's order and tie rule), and
//! `knn_vote` gives the prediction. Only one tile × chunk similarity block
//! exists at a time, so 50,000 × 10,000 needs `tiles.test_rows ×
//! tiles.train_cols` floats, not 500 million.

use bytemuck::Zeroable;
use scorecl_core::knn::KnnConfig;
use scorecl_shaders::KNN;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernel_params;
use crate::ops::gemm::{gemm, GemmSpec};
use crate::ops::rows;
use crate::step::grid;
use crate::tensor::{DType, Tensor};

kernel_params! {
    struct Params {
        rows: u32,
        cols: u32,
        k: u32,
        col0: u32,
        classes: u32,
        row0: u32,
        temperature: f32,
        _p: u32,
    }
}

/// This family's parameters struct, for the layout test.
pub(crate) const PARAMS: crate::kernel::ParamsDecl = crate::kernel::ParamsDecl::of::<Params>();

/// Tile sizes of the similarity blocks.
#[derive(Debug, Clone, Copy)]
pub struct KnnTiles {
    /// Test rows per tile (one submit per tile).
    pub test_rows: usize,
    /// Training rows per chunk (one GEMM + merge per chunk).
    pub train_cols: usize,
}

impl Default for KnnTiles {
    /// 1024 × 8192: a 32 MiB similarity block.
    fn default() -> Self {
        KnnTiles {
            test_rows: 1024,
            train_cols: 8192,
        }
    }
}

/// Row-normalised copy of `x` (rows × d).
fn normalized(gpu: &Gpu, x: &Tensor, rows: usize, d: usize) -> Result<Tensor> {
    let y = gpu.tensor(&[rows * d], DType::F32)?;
    let norms = gpu.tensor(&[rows], DType::F32)?;
    let mut s = gpu.step("knn normalise");
    rows::l2norm(&mut s, x, rows, d, &y, &norms)?;
    s.submit()?;
    Ok(y)
}

/// Predicts a class for every row of `test` (n_test × d) from `train`
/// (labels.len() × d) with the core's rule: cosine similarity, the k most
/// similar training rows (k clamped to the training-set size) voting
/// `exp(sim / T)`.
#[allow(clippy::too_many_arguments)]
pub fn predict(
    gpu: &Gpu,
    train: &Tensor,
    labels: &[u32],
    test: &Tensor,
    d: usize,
    classes: usize,
    cfg: &KnnConfig,
    tiles: KnnTiles,
) -> Result<Vec<u32>> {
    cfg.validate()?;
    let n_train = labels.len();
    if n_train == 0 || d == 0 || classes == 0 {
        return Err(Error::shape(
            "knn",
            format!("{n_train} training rows, d {d}, {classes} classes: each must be at least 1"),
        ));
    }
    if let Some((i, l)) = labels
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= classes)
    {
        return Err(Error::shape(
            "knn labels",
            format!("label {l} of training row {i} out of range ({classes} classes)"),
        ));
    }
    train.expect_len("knn train features", n_train * d)?;
    if test.len() % d != 0 {
        return Err(Error::shape(
            "knn test features",
            format!("{} values are not rows of {d}", test.len()),
        ));
    }
    let n_test = test.len() / d;
    if n_test == 0 {
        return Ok(Vec::new());
    }
    let k = cfg.k.min(n_train);
    let tr = tiles.test_rows.clamp(1, n_test);
    let mut tc = tiles.train_cols.clamp(1, n_train);
    if gpu.caps.class == crate::AdapterClass::Cpu {
        // Mesa's llvmpipe / lavapipe stop a shader loop after 65,535
        // iterations: knn_merge's insertion loop makes up to k − 1 shifts
        // per column of a chunk, so chunks are bounded to keep the total
        // below that (found by the native CPU device, which agreed with
        // the core where lavapipe did not at 2048 columns, k 200).
        tc = tc.min((60_000 / k.max(1)).max(1));
    }
    let train_n = normalized(gpu, train, n_train, d)?;
    let test_n = normalized(gpu, test, n_test, d)?;
    let lab = gpu.tensor(&[n_train], DType::U32)?;
    gpu.write(&lab, bytemuck::cast_slice(labels))?;
    let sims = gpu.tensor(&[tr * tc], DType::F32)?;
    let top_sim = gpu.tensor(&[tr * k], DType::F32)?;
    let top_idx = gpu.tensor(&[tr * k], DType::U32)?;
    let count = gpu.tensor(&[tr], DType::U32)?;
    let scores = gpu.tensor(&[tr * classes], DType::F32)?;
    let preds = gpu.tensor(&[n_test], DType::U32)?;
    let merge = gpu.kernel(&KNN, "knn_merge", &[], &[])?;
    let vote = gpu.kernel(&KNN, "knn_vote", &[], &[])?;
    let mut last = None;
    for row0 in (0..n_test).step_by(tr) {
        let rows = tr.min(n_test - row0);
        let mut s = gpu.step("knn tile");
        for col0 in (0..n_train).step_by(tc) {
            let cols = tc.min(n_train - col0);
            let spec = GemmSpec {
                trans_b: true,
                a_off: row0 * d,
                b_off: col0 * d,
                ..GemmSpec::new(rows, cols, d)
            };
            gemm(&mut s, &spec, &test_n, &train_n, None, &sims)?;
            let p = Params {
                rows: rows as u32,
                cols: cols as u32,
                k: k as u32,
                col0: col0 as u32,
                ..Zeroable::zeroed()
            };
            s.dispatch(
                &merge,
                &p,
                crate::bind![
                    sims = &sims,
                    top_sim = &top_sim,
                    top_idx = &top_idx,
                    count = &count
                ],
                grid(rows, 64),
            )?;
        }
        let p = Params {
            rows: rows as u32,
            k: k as u32,
            classes: classes as u32,
            row0: row0 as u32,
            temperature: cfg.temperature,
            ..Zeroable::zeroed()
        };
        s.dispatch(
            &vote,
            &p,
            crate::bind![
                vote_sim = &top_sim,
                vote_idx = &top_idx,
                labels = &lab,
                scores = &scores,
                preds = &preds
            ],
            grid(rows, 64),
        )?;
        if row0 + tr >= n_test {
            last = Some(s.readback(&preds));
        }
        let rb = s.submit()?;
        if let Some(i) = last {
            // Readbacks cover the whole (aligned) buffer.
            return Ok(rb.u32(i)[..n_test].to_vec());
        }
    }
    unreachable!("the last tile reads the predictions back")
}

/// Native CPU twins of `knn_merge` and `knn_vote`, a test row per
/// parallel task.
// `!(a > b)` on purpose: NaN takes the same branch as in the WGSL.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub(crate) mod native {
    use super::Params;
    use crate::error::Result;
    use crate::native::{need, rows_mut, Invocation, KernelFn, SharedMut};

    pub(crate) fn kernel(entry: &str) -> Option<KernelFn> {
        Some(match entry {
            "knn_merge" => merge,
            "knn_vote" => vote,
            _ => return None,
        })
    }

    fn merge(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let sims = inv.f32(0)?;
        let (top_sim, top_idx, count) = (inv.f32_mut(1)?, inv.u32_mut(2)?, inv.u32_mut(3)?);
        let (rows, cols, k) = (p.rows as usize, p.cols as usize, p.k as usize);
        need(
            inv,
            &[
                ("sims", sims.len(), rows * cols),
                ("top_sim", top_sim.len(), rows * k),
                ("top_idx", top_idx.len(), rows * k),
                ("count", count.len(), rows),
            ],
        )?;
        if k == 0 {
            return Ok(());
        }
        let (top_idx, count) = (SharedMut::new(top_idx), SharedMut::new(count));
        rows_mut(top_sim, rows, k, cols, |r, ts| {
            let ti = top_idx.slice(r * k, k);
            let mut len = if p.col0 == 0 {
                0
            } else {
                count.get(r) as usize
            };
            for (c, &s) in sims[r * cols..(r + 1) * cols].iter().enumerate() {
                if len == k && !(s > ts[k - 1]) {
                    continue;
                }
                let mut q = if len < k { len } else { k - 1 };
                while q > 0 && ts[q - 1] < s {
                    ts[q] = ts[q - 1];
                    ti[q] = ti[q - 1];
                    q -= 1;
                }
                ts[q] = s;
                ti[q] = p.col0 + c as u32;
                len = (len + 1).min(k);
            }
            count.set(r, len as u32);
        });
        Ok(())
    }

    fn vote(inv: &Invocation) -> Result<()> {
        let p: Params = inv.params()?;
        let (vs, vi, labels) = (inv.f32(0)?, inv.u32(1)?, inv.u32(2)?);
        let (scores, preds) = (inv.f32_mut(3)?, inv.u32_mut(4)?);
        let (rows, k, classes, row0) = (
            p.rows as usize,
            p.k as usize,
            p.classes as usize,
            p.row0 as usize,
        );
        need(
            inv,
            &[
                ("vote_sim", vs.len(), rows * k),
                ("vote_idx", vi.len(), rows * k),
                ("scores", scores.len(), rows * classes),
                ("preds", preds.len(), row0 + rows),
            ],
        )?;
        if k == 0 || classes == 0 {
            return Ok(());
        }
        for &i in &vi[..rows * k] {
            let l = labels.get(i as usize).copied().unwrap_or(u32::MAX);
            if l as usize >= classes {
                return Err(inv.short(
                    "labels (a neighbour's label)",
                    labels.len(),
                    i as usize + 1,
                ));
            }
        }
        let preds = SharedMut::new(preds);
        rows_mut(scores, rows, classes, k + classes, |r, sc| {
            sc.fill(0.0);
            let (s, idx) = (&vs[r * k..(r + 1) * k], &vi[r * k..(r + 1) * k]);
            let mut top = s[0];
            for v in &s[1..] {
                top = top.max(*v);
            }
            for j in 0..k {
                sc[labels[idx[j] as usize] as usize] += ((s[j] - top) / p.temperature).exp();
            }
            let mut best = 0;
            for c in 1..classes {
                if sc[c] > sc[best] {
                    best = c;
                }
            }
            preds.set(row0 + r, best as u32);
        });
        Ok(())
    }
}

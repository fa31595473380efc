//! The C ABI of `scorecl-core` (header: `capi/include/scorecl.h`; Python
//! wrapper: `capi/python/scorecl_capi.py`). Each function returns 0 on
//! success or a negative code, and then [`scorecl_last_error`] gives the
//! message (naming the argument). Arrays are row-major f32 (labels u32);
//! optional outputs (gradients, statistics) and the weights may be NULL.
//! Nothing here allocates beyond the scratch the core asks for, and no
//! panic crosses the boundary.
//!
//! This is how a PyTorch user adds ScoreCL to an existing loop: compute
//! the pair weights from the two views' score fields (or any per-view
//! statistic), then either call a loss here for its value and gradient, or
//! multiply their own per-pair loss by the weights.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use scorecl_core::knn::{self, KnnConfig, KnnSet};
use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::vicreg::VicRegConfig;
use scorecl_core::weights::{self, ScoreWeightConfig, WeightMode};
use scorecl_core::wmse::WmseConfig;
use scorecl_core::{simclr, simsiam, vicreg, wmse, GradPair, Views};

/// Success.
pub const SCORECL_OK: i32 = 0;
/// A required pointer was NULL.
pub const SCORECL_ERR_NULL: i32 = -1;
/// The core rejected a shape or value (the message names it).
pub const SCORECL_ERR_INVALID: i32 = -2;
/// An internal error (a panic caught at the boundary).
pub const SCORECL_ERR_INTERNAL: i32 = -3;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn fail(code: i32, msg: String) -> i32 {
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
    code
}

/// Runs `f`, turning errors and panics into codes and messages.
fn guard(f: impl FnOnce() -> Result<(), (i32, String)>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            LAST_ERROR.with(|e| e.borrow_mut().clear());
            SCORECL_OK
        }
        Ok(Err((code, msg))) => fail(code, msg),
        Err(_) => fail(SCORECL_ERR_INTERNAL, "internal error (panic)".into()),
    }
}

fn invalid(e: scorecl_core::CoreError) -> (i32, String) {
    (SCORECL_ERR_INVALID, e.to_string())
}

/// `len` elements at `p`, or an error naming `what` when `p` is NULL.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], (i32, String)> {
    if p.is_null() {
        return Err((SCORECL_ERR_NULL, format!("{what} is NULL")));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

unsafe fn slice_mut<'a, T>(
    p: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T], (i32, String)> {
    if p.is_null() {
        return Err((SCORECL_ERR_NULL, format!("{what} is NULL")));
    }
    Ok(std::slice::from_raw_parts_mut(p, len))
}

/// Optional input: NULL is `None`.
unsafe fn opt<'a, T>(p: *const T, len: usize) -> Option<&'a [T]> {
    (!p.is_null()).then(|| std::slice::from_raw_parts(p, len))
}

/// Optional gradient pair: both NULL is `None`, one NULL is an error.
unsafe fn grads<'a>(
    a: *mut f32,
    b: *mut f32,
    len: usize,
) -> Result<Option<GradPair<'a>>, (i32, String)> {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some(GradPair::new(
            std::slice::from_raw_parts_mut(a, len),
            std::slice::from_raw_parts_mut(b, len),
        ))),
        _ => Err((
            SCORECL_ERR_NULL,
            "give both gradients or neither (one is NULL)".into(),
        )),
    }
}

fn weight_config(
    mode: i32,
    gamma: f32,
    alpha: f32,
    w_max: f32,
) -> Result<ScoreWeightConfig, (i32, String)> {
    let mode = match mode {
        0 => WeightMode::Uniform,
        1 => WeightMode::Score,
        2 => WeightMode::Shuffled,
        m => {
            return Err((
                SCORECL_ERR_INVALID,
                format!("mode {m}: allowed 0 (uniform), 1 (score), 2 (shuffled)"),
            ))
        }
    };
    Ok(ScoreWeightConfig {
        mode,
        gamma,
        alpha,
        w_max,
        ..Default::default()
    })
}

/// Copies the last error message of this thread into `buf` (NUL-terminated,
/// truncated to `len − 1` bytes) and returns its full length in bytes (0
/// when the last call succeeded). `buf` may be NULL to ask for the length.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn scorecl_last_error(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        if !buf.is_null() && len > 0 {
            let n = e.len().min(len - 1);
            std::ptr::copy_nonoverlapping(e.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
        }
        e.len()
    })
}

/// ScoreCL pair weights from the score fields `s1`, `s2` (n × dim each) of
/// the two views: `S = ‖s‖/√dim` per view into `stats` (2n, may be NULL),
/// weights into `weights` (n). `mode`: 0 uniform, 1 score, 2 shuffled (the
/// permutation drawn from `seed` and `step` as the trainer draws it).
///
/// # Safety
/// Pointers are valid for the stated lengths (or NULL where allowed).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn scorecl_score_weights(
    s1: *const f32,
    s2: *const f32,
    n: usize,
    dim: usize,
    mode: i32,
    gamma: f32,
    alpha: f32,
    w_max: f32,
    seed: u64,
    step: u64,
    weights_out: *mut f32,
    stats_out: *mut f32,
) -> i32 {
    guard(|| {
        let cfg = weight_config(mode, gamma, alpha, w_max)?;
        let (a, b) = (slice(s1, n * dim, "s1")?, slice(s2, n * dim, "s2")?);
        let w = slice_mut(weights_out, n, "weights")?;
        let mut own = Vec::new();
        let stats: &mut [f32] = if stats_out.is_null() {
            own.resize(2 * n, 0.0);
            &mut own
        } else {
            std::slice::from_raw_parts_mut(stats_out, 2 * n)
        };
        let shuffle = Philox::new(seed, stream_id(Purpose::Shuffle, step));
        let v = Views::new(a, b, n, dim).map_err(invalid)?;
        weights::score_weights(v, &cfg, &shuffle, w, stats).map_err(invalid)
    })
}

/// Pair weights from any per-view statistic (`stat_a`, `stat_b`: n each),
/// the same transform as [`scorecl_score_weights`].
///
/// # Safety
/// Pointers are valid for n elements.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn scorecl_weights_from_statistics(
    stat_a: *const f32,
    stat_b: *const f32,
    n: usize,
    mode: i32,
    gamma: f32,
    alpha: f32,
    w_max: f32,
    seed: u64,
    step: u64,
    weights_out: *mut f32,
) -> i32 {
    guard(|| {
        let cfg = weight_config(mode, gamma, alpha, w_max)?;
        let (a, b) = (slice(stat_a, n, "stat_a")?, slice(stat_b, n, "stat_b")?);
        let w = slice_mut(weights_out, n, "weights")?;
        let shuffle = Philox::new(seed, stream_id(Purpose::Shuffle, step));
        weights::from_statistics(a, b, &cfg, &shuffle, w).map_err(invalid)
    })
}

/// Weighted NT-Xent (SimCLR) of projections `z1`, `z2` (n × d): value into
/// `loss`, gradients into `grad1`, `grad2` (n × d, both or neither NULL).
/// `weights` (n) NULL is the unweighted loss.
///
/// # Safety
/// Pointers are valid for the stated lengths (or NULL where allowed).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn scorecl_simclr(
    z1: *const f32,
    z2: *const f32,
    n: usize,
    d: usize,
    weights: *const f32,
    temperature: f32,
    grad1: *mut f32,
    grad2: *mut f32,
    loss: *mut f32,
) -> i32 {
    guard(|| {
        let v =
            Views::new(slice(z1, n * d, "z1")?, slice(z2, n * d, "z2")?, n, d).map_err(invalid)?;
        let out = slice_mut(loss, 1, "loss")?;
        let mut scratch = vec![0.0f32; simclr::scratch_len(n, d)];
        let cfg = simclr::SimClrConfig { temperature };
        out[0] = simclr::loss(
            v,
            opt(weights, n),
            &cfg,
            grads(grad1, grad2, n * d)?,
            &mut scratch,
        )
        .map_err(invalid)?;
        Ok(())
    })
}

/// Weighted SimSiam of predictions `p1`, `p2` and projections `z1`, `z2`
/// (n × d; z is stop-gradient): value into `loss`, gradients for p1, p2.
///
/// # Safety
/// Pointers are valid for the stated lengths (or NULL where allowed).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn scorecl_simsiam(
    p1: *const f32,
    p2: *const f32,
    z1: *const f32,
    z2: *const f32,
    n: usize,
    d: usize,
    weights: *const f32,
    grad_p1: *mut f32,
    grad_p2: *mut f32,
    loss: *mut f32,
) -> i32 {
    guard(|| {
        let p =
            Views::new(slice(p1, n * d, "p1")?, slice(p2, n * d, "p2")?, n, d).map_err(invalid)?;
        let z =
            Views::new(slice(z1, n * d, "z1")?, slice(z2, n * d, "z2")?, n, d).map_err(invalid)?;
        let out = slice_mut(loss, 1, "loss")?;
        out[0] = simsiam::loss(p, z, opt(weights, n), grads(grad_p1, grad_p2, n * d)?)
            .map_err(invalid)?;
        Ok(())
    })
}

/// Weighted W-MSE (whitening in chunks of `w_size` rows, shrinkage `eps`).
///
/// # Safety
/// Pointers are valid for the stated lengths (or NULL where allowed).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn scorecl_wmse(
    z1: *const f32,
    z2: *const f32,
    n: usize,
    d: usize,
    weights: *const f32,
    eps: f32,
    w_size: usize,
    grad1: *mut f32,
    grad2: *mut f32,
    loss: *mut f32,
) -> i32 {
    guard(|| {
        let v =
            Views::new(slice(z1, n * d, "z1")?, slice(z2, n * d, "z2")?, n, d).map_err(invalid)?;
        let out = slice_mut(loss, 1, "loss")?;
        let mut scratch = vec![0.0f64; wmse::scratch_len(n, d)];
        let cfg = WmseConfig { eps, w_size };
        out[0] = wmse::loss(
            v,
            opt(weights, n),
            None,
            &cfg,
            grads(grad1, grad2, n * d)?,
            &mut scratch,
        )
        .map_err(invalid)?;
        Ok(())
    })
}

/// Weighted VICReg: `loss` (4) receives the total, then the unscaled
/// invariance, variance and covariance terms.
///
/// # Safety
/// Pointers are valid for the stated lengths (or NULL where allowed).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn scorecl_vicreg(
    z1: *const f32,
    z2: *const f32,
    n: usize,
    d: usize,
    weights: *const f32,
    sim_coeff: f32,
    std_coeff: f32,
    cov_coeff: f32,
    grad1: *mut f32,
    grad2: *mut f32,
    loss: *mut f32,
) -> i32 {
    guard(|| {
        let v =
            Views::new(slice(z1, n * d, "z1")?, slice(z2, n * d, "z2")?, n, d).map_err(invalid)?;
        let out = slice_mut(loss, 4, "loss (4)")?;
        let mut scratch = vec![0.0f32; vicreg::scratch_len(d)];
        let cfg = VicRegConfig {
            sim_coeff,
            std_coeff,
            cov_coeff,
        };
        let r = vicreg::loss(
            v,
            opt(weights, n),
            &cfg,
            grads(grad1, grad2, n * d)?,
            &mut scratch,
        )
        .map_err(invalid)?;
        out.copy_from_slice(&[r.loss, r.invariance, r.variance, r.covariance]);
        Ok(())
    })
}

/// The k-NN vote over one test row's `k` neighbours: similarities `sims`
/// and labels `labels` (k each) vote `exp(sim/T)` into `scores` (classes);
/// the predicted class into `pred`.
///
/// # Safety
/// Pointers are valid for the stated lengths.
#[no_mangle]
pub unsafe extern "C" fn scorecl_knn_vote(
    sims: *const f32,
    labels: *const u32,
    k: usize,
    classes: usize,
    temperature: f32,
    scores: *mut f32,
    pred: *mut u32,
) -> i32 {
    guard(|| {
        let (s, l) = (slice(sims, k, "sims")?, slice(labels, k, "labels")?);
        if let Some(bad) = l.iter().find(|c| **c as usize >= classes) {
            return Err((
                SCORECL_ERR_INVALID,
                format!("labels: {bad} is not below classes ({classes})"),
            ));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err((
                SCORECL_ERR_INVALID,
                format!("temperature {temperature}: must be > 0"),
            ));
        }
        let sc = slice_mut(scores, classes, "scores")?;
        let p = slice_mut(pred, 1, "pred")?;
        p[0] = knn::vote(s, l, temperature, sc);
        Ok(())
    })
}

/// The whole weighted k-NN classifier: cosine similarity of each test row
/// to the training rows, the `k` nearest vote; predictions into `preds`.
///
/// # Safety
/// Pointers are valid for the stated lengths.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn scorecl_knn_predict(
    train: *const f32,
    train_labels: *const u32,
    n_train: usize,
    test: *const f32,
    n_test: usize,
    d: usize,
    classes: usize,
    k: usize,
    temperature: f32,
    preds: *mut u32,
) -> i32 {
    guard(|| {
        let set = KnnSet {
            train: slice(train, n_train * d, "train")?,
            train_labels: slice(train_labels, n_train, "train_labels")?,
            test: slice(test, n_test * d, "test")?,
            d,
            classes,
        };
        let out = slice_mut(preds, n_test, "preds")?;
        let cfg = KnnConfig { k, temperature };
        let kk = k.min(n_train);
        let mut scratch = vec![0.0f32; knn::scratch_len(n_train, kk, classes)];
        let mut idx = vec![0u32; knn::index_scratch_len(n_train, k)];
        knn::predict(&set, &cfg, out, &mut scratch, &mut idx).map_err(invalid)
    })
}

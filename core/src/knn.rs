//! Weighted k-NN classifier (InstDisc / lightly protocol).
//!
//! Features are L2-normalised, similarity is the cosine; the k most similar
//! training rows (k clamps to the training-set size; ties keep the lower
//! training index) vote for their class with weight `exp(sim / T)`; the
//! prediction is the class with the largest total, ties to the lowest class.

use crate::math::{check_len, check_scratch, clamped_norm, dot, positive};
use crate::{CoreError, Result};

/// Configuration of the k-NN classifier.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct KnnConfig {
    /// Neighbours (200); clamped to the training-set size.
    pub k: usize,
    /// Vote temperature T (0.1).
    pub temperature: f32,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 200,
            temperature: 0.1,
        }
    }
}

impl KnnConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(CoreError::Config {
                field: "k",
                allowed: "at least 1",
            });
        }
        positive("temperature", self.temperature)
    }
}

/// Training and test features (row-major, `d` columns) and training labels.
#[derive(Debug, Clone, Copy)]
pub struct KnnSet<'a> {
    /// Training features (n_train × d).
    pub train: &'a [f32],
    /// Training labels (n_train), each below `classes`.
    pub train_labels: &'a [u32],
    /// Test features (n_test × d).
    pub test: &'a [f32],
    /// Feature dimension.
    pub d: usize,
    /// Number of classes.
    pub classes: usize,
}

impl KnnSet<'_> {
    fn validate(&self) -> Result<(usize, usize)> {
        if self.d == 0 || self.classes == 0 {
            return Err(CoreError::Config {
                field: if self.d == 0 { "d" } else { "classes" },
                allowed: "at least 1",
            });
        }
        let n_train = self.train_labels.len();
        if n_train == 0 {
            return Err(CoreError::Config {
                field: "train",
                allowed: "at least one training row",
            });
        }
        check_len("train", self.train.len(), n_train * self.d)?;
        if self.test.len() % self.d != 0 {
            return Err(CoreError::Shape {
                what: "test",
                expected: (self.test.len() / self.d) * self.d,
                got: self.test.len(),
            });
        }
        for (index, &label) in self.train_labels.iter().enumerate() {
            if label as usize >= self.classes {
                return Err(CoreError::Label {
                    index,
                    label,
                    classes: self.classes,
                });
            }
        }
        Ok((n_train, self.test.len() / self.d))
    }
}

/// f32 scratch [`predict`] needs: `n_train + k + classes`.
pub fn scratch_len(n_train: usize, k: usize, classes: usize) -> usize {
    n_train + k.min(n_train) + classes
}

/// u32 scratch [`predict`] needs: `k` (clamped to `n_train`).
pub fn index_scratch_len(n_train: usize, k: usize) -> usize {
    k.min(n_train)
}

/// The vote: `scores[c] = Σ_{j: labels[j] = c} exp(sims[j] / T)`, returns
/// the argmax (lowest class on ties). `scores.len()` is the class count.
/// Scores are computed as `exp((sim − max sim)/T)`, the same up to one
/// common factor, so a small T cannot overflow.
pub fn vote(sims: &[f32], labels: &[u32], temperature: f32, scores: &mut [f32]) -> u32 {
    scores.iter_mut().for_each(|s| *s = 0.0);
    let top = sims.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s)) as f64;
    for (s, &l) in sims.iter().zip(labels) {
        let e = libm::exp((*s as f64 - top) / temperature as f64);
        let slot = &mut scores[l as usize];
        *slot = (*slot as f64 + e) as f32;
    }
    let mut best = 0usize;
    for c in 1..scores.len() {
        if scores[c] > scores[best] {
            best = c;
        }
    }
    best as u32
}

/// Predicts a class for every test row into `preds`.
pub fn predict(
    set: &KnnSet<'_>,
    cfg: &KnnConfig,
    preds: &mut [u32],
    scratch: &mut [f32],
    index_scratch: &mut [u32],
) -> Result<()> {
    cfg.validate()?;
    let (n_train, n_test) = set.validate()?;
    check_len("preds", preds.len(), n_test)?;
    let k = cfg.k.min(n_train);
    check_scratch(
        "knn::predict",
        scratch.len(),
        scratch_len(n_train, k, set.classes),
    )?;
    check_scratch(
        "knn::predict (indices)",
        index_scratch.len(),
        index_scratch_len(n_train, k),
    )?;
    let d = set.d;
    let (inv_norm, rest) = scratch.split_at_mut(n_train);
    let (top_sim, rest) = rest.split_at_mut(k);
    let scores = &mut rest[..set.classes];
    let top_idx = &mut index_scratch[..k];
    for (j, v) in inv_norm.iter_mut().enumerate() {
        *v = (1.0 / clamped_norm(&set.train[j * d..(j + 1) * d])) as f32;
    }
    for (t, pred) in preds.iter_mut().enumerate() {
        let q = &set.test[t * d..(t + 1) * d];
        let qn = 1.0 / clamped_norm(q);
        let mut len = 0usize;
        for j in 0..n_train {
            let s = (dot(q, &set.train[j * d..(j + 1) * d]) * qn * inv_norm[j] as f64) as f32;
            if len == k && s.partial_cmp(&top_sim[k - 1]) != Some(core::cmp::Ordering::Greater) {
                continue;
            }
            // Insert after every entry >= s, so equal similarities keep the
            // lower training index first.
            let mut p = if len < k { len } else { k - 1 };
            while p > 0 && top_sim[p - 1] < s {
                top_sim[p] = top_sim[p - 1];
                top_idx[p] = top_idx[p - 1];
                p -= 1;
            }
            top_sim[p] = s;
            top_idx[p] = j as u32;
            len = (len + 1).min(k);
        }
        // Labels of the neighbours, reusing the index slots.
        for i in top_idx.iter_mut() {
            *i = set.train_labels[*i as usize];
        }
        *pred = vote(top_sim, top_idx, cfg.temperature, scores);
    }
    Ok(())
}

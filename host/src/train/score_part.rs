//! The score network with its training buffers: its DSM step with its own
//! Adam, and the per-view statistic the pair weights come from (step 2 and
//! step 5 of the trainer's order, `train/trainer.rs`).

use scorecl_core::optim::AdamConfig;
use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::weights::Statistic;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::{ScoreConfig, ScoreNet, ScoreWorkspace};
use crate::ops::{dsm, optim, pair_weights};
use crate::tensor::{DType, Tensor};
use crate::train::config::TrainConfig;
use crate::train::trainer::check_guard;
use crate::train::TrainResult;

/// One noise level of the weights' statistic: σ, its one-entry table (the
/// `dsm` statistic's perturbation) and σ, ln σ per view (FiLM input).
struct StatLevel {
    sigma: f32,
    table: Tensor,
    sig: Tensor,
    logsig: Tensor,
}

/// The score network with its training buffers.
pub(crate) struct ScorePart {
    pub(crate) net: ScoreNet,
    /// Adam moments per parameter.
    pub(crate) moments: Vec<[Tensor; 2]>,
    views: ScoreWorkspace,
    dsm: ScoreWorkspace,
    /// The levels the weights' statistic is averaged over.
    stat_levels: Vec<StatLevel>,
    /// The `dsm` statistic's noised views, their noise and σ (2n views).
    stat_noise: Option<[Tensor; 3]>,
    table: Tensor,
    x_noisy: Tensor,
    eps: Tensor,
    sigma: Tensor,
    logsig: Tensor,
    terms: Tensor,
    dscore: Tensor,
    pub(crate) loss: Tensor,
    /// The optimizer's non-finite guard, a slot per parameter.
    flags: Tensor,
}

impl ScorePart {
    /// The score network of `cfg` (initialised from `seed ^ 0x5c0e`), its
    /// Adam moments and the buffers of its two jobs: the pair weights on
    /// `2n` views of `size²` and the DSM step on `n` clean `h × w` images.
    pub(crate) fn new(
        gpu: &Gpu,
        cfg: &TrainConfig,
        n: usize,
        size: usize,
        (h, w): (usize, usize),
        seed: u64,
    ) -> Result<ScorePart> {
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        let mut net = ScoreNet::new(
            gpu,
            ScoreConfig {
                width: cfg.scorecl.width,
                depth: cfg.scorecl.depth,
            },
            seed ^ 0x5c0e,
        )?;
        net.precision = cfg.conv_precision();
        let moments = net
            .store
            .params
            .iter()
            .map(|p| Ok([gpu.zeros(&[p.value.len()])?, gpu.zeros(&[p.value.len()])?]))
            .collect::<Result<Vec<_>>>()?;
        let table = dsm::sigma_table(&cfg.scorecl.schedule());
        let stat_levels = cfg
            .scorecl
            .stat_sigmas()
            .into_iter()
            .map(|sigma| {
                Ok(StatLevel {
                    sigma,
                    table: gpu.upload(&[sigma], &[1])?,
                    sig: gpu.upload(&vec![sigma; 2 * n], &[2 * n])?,
                    logsig: gpu.upload(&vec![sigma.ln(); 2 * n], &[2 * n])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let stat_noise = match cfg.scorecl.statistic {
            Statistic::Dsm => Some([
                t(2 * n * 3 * size * size)?,
                t(2 * n * 3 * size * size)?,
                t(2 * n)?,
            ]),
            _ => None,
        };
        Ok(ScorePart {
            views: net.forward_workspace(gpu, 2 * n, size, size)?,
            dsm: net.workspace(gpu, n, h, w)?,
            flags: gpu.tensor(&[net.store.params.len()], crate::tensor::DType::U32)?,
            moments,
            net,
            stat_levels,
            stat_noise,
            table: gpu.upload(&table, &[table.len()])?,
            x_noisy: t(n * 3 * h * w)?,
            eps: t(n * 3 * h * w)?,
            sigma: t(n)?,
            logsig: t(n)?,
            terms: t(n)?,
            dscore: t(n * 3 * h * w)?,
            loss: t(1)?,
        })
    }

    /// The per-view statistic of the 2n views `views` (pixel scale, [2n,
    /// `view`]) into `stats`: the mean over the statistic's levels of the
    /// core's `view_statistic` (`dsm`: each level perturbs the views with
    /// its own noise, stream `StatNoise` at `16·step + level`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn view_statistics(
        &self,
        s: &mut crate::step::Step<'_>,
        cfg: &TrainConfig,
        views: &Tensor,
        view: usize,
        step: u64,
        shard: Option<crate::dist::Shard>,
        stats: &Tensor,
    ) -> Result<()> {
        let kind = cfg.scorecl.statistic;
        let scale = 1.0 / self.stat_levels.len() as f32;
        for (l, lev) in self.stat_levels.iter().enumerate() {
            let (input, eps) = match &self.stat_noise {
                Some([noisy, eps, sigma]) => {
                    let seed = cfg.train.seed;
                    let noise =
                        Philox::new(seed, stream_id(Purpose::StatNoise, 16 * step + l as u64));
                    // One level in the table: every view gets σ.
                    dsm::perturb_shard(
                        s, views, view, &lev.table, &noise, &noise, noisy, eps, sigma, shard,
                    )?;
                    (noisy, Some(eps))
                }
                None => (views, None),
            };
            self.net
                .forward(s, &self.views, input, &lev.sig, &lev.logsig)?;
            pair_weights::view_statistic(
                s,
                &self.views.score,
                eps,
                view,
                kind,
                lev.sigma,
                (scale, l > 0),
                stats,
            )?;
        }
        Ok(())
    }

    /// Uploads ln σ of each sample of the step, drawn as the DSM kernel
    /// draws them (the FiLM conditioning reads them).
    pub(crate) fn upload_log_sigmas(
        &self,
        gpu: &Gpu,
        cfg: &TrainConfig,
        sigmas: &Philox,
        first: usize,
    ) -> Result<()> {
        let sched = cfg.scorecl.schedule();
        let first = first as u64;
        let logs: Vec<f32> = (0..self.sigma.len() as u64)
            .map(|i| {
                sched
                    .sigma(sched.level_for(sigmas.uniform_at(first + i)))
                    .ln()
            })
            .collect();
        gpu.write(&self.logsig, bytemuck::cast_slice(&logs))
    }

    /// Writes the DSM step's draws given instead of drawn (the trainer's
    /// `step_given`): the noise ε, σ per image, ln σ and the perturbed
    /// images `clean + σ·ε`, as `dsm_perturb` computes them.
    pub(crate) fn write_given_noise(
        &self,
        gpu: &Gpu,
        clean: &[f32],
        eps: &[f32],
        sigma: &[f32],
    ) -> Result<()> {
        let dim = clean.len() / sigma.len().max(1);
        let noisy: Vec<f32> = clean
            .iter()
            .zip(eps)
            .enumerate()
            .map(|(t, (x, e))| x + sigma[t / dim] * e)
            .collect();
        let logs: Vec<f32> = sigma.iter().map(|s| s.ln()).collect();
        gpu.write(&self.x_noisy, bytemuck::cast_slice(&noisy))?;
        gpu.write(&self.eps, bytemuck::cast_slice(eps))?;
        gpu.write(&self.sigma, bytemuck::cast_slice(sigma))?;
        gpu.write(&self.logsig, bytemuck::cast_slice(&logs))
    }

    /// One DSM step on the clean images `clean` (n × `dim`): perturb with
    /// the `(noise, sigmas)` streams (None: the draws written by
    /// [`ScorePart::write_given_noise`] are in place), forward, loss,
    /// backward, Adam at `lr` (step `step`, 0-based). The loss lands in
    /// `self.loss`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dsm_step(
        &self,
        s: &mut crate::step::Step<'_>,
        clean: &Tensor,
        dim: usize,
        draws: Option<(&Philox, &Philox)>,
        lr: f32,
        step: u64,
        dp: Option<(&crate::dist::Link, crate::dist::Shard)>,
    ) -> Result<()> {
        self.net.store.zero_grads(s)?;
        s.clear(&self.flags);
        if let Some((noise, sigmas)) = draws {
            dsm::perturb_shard(
                s,
                clean,
                dim,
                &self.table,
                noise,
                sigmas,
                &self.x_noisy,
                &self.eps,
                &self.sigma,
                dp.map(|(_, shard)| shard),
            )?;
        }
        self.net
            .forward(s, &self.dsm, &self.x_noisy, &self.sigma, &self.logsig)?;
        dsm::loss(
            s,
            &self.dsm.score,
            &self.eps,
            &self.sigma,
            dim,
            &self.terms,
            &self.dscore,
            &self.loss,
        )?;
        self.net.backward(
            s,
            &self.dsm,
            &self.x_noisy,
            &self.sigma,
            &self.logsig,
            &self.dscore,
        )?;
        // The loss is a mean over the rank's images: the mean over the
        // ranks of the gradients (and losses) is the global batch's.
        if let Some((comm, shard)) = dp {
            let mut all: Vec<&Tensor> = self.net.store.params.iter().map(|p| &p.grad).collect();
            all.push(&self.loss);
            let scale = 1.0 / shard.size as f32;
            crate::dist::all_reduce(s, comm, "all-reduce score gradients", &all, scale)?;
        }
        let adam = AdamConfig::default();
        for (i, (p, [m, v])) in self.net.store.params.iter().zip(&self.moments).enumerate() {
            let guard = optim::Guard {
                flags: &self.flags,
                slot: i,
            };
            optim::adam(
                s,
                &p.value,
                &p.grad,
                m,
                v,
                lr,
                (step + 1) as u32,
                &adam,
                guard,
            )?;
        }
        Ok(())
    }

    /// The guard flags of the last DSM step (a u32 per parameter).
    pub(crate) fn flags(&self) -> &Tensor {
        &self.flags
    }

    /// The first parameter the guard flagged, as an error.
    pub(crate) fn check_flags(&self, flags: &[u32], step: u64, epoch: u64) -> TrainResult<()> {
        check_guard(flags, step, epoch, |i| {
            format!("score.{}", self.net.store.params[i].name)
        })
    }

    /// The DSM loss of the last step (a tensor of 1).
    pub(crate) fn loss(&self) -> &Tensor {
        &self.loss
    }

    /// The score network's own quality: its DSM loss `½‖σ·s + ε‖²` per
    /// image at each level of the schedule (σ_max first), on every full
    /// batch of `data` in index order with fixed noise (stream `StatNoise`
    /// at 2⁴⁰ + batch·levels + level). A network that outputs zero scores
    /// ½·D at every level.
    pub(crate) fn dsm_per_level(
        &self,
        gpu: &Gpu,
        cfg: &TrainConfig,
        data: &Dataset,
    ) -> Result<Vec<f64>> {
        let n = self.sigma.len();
        let dim = 3 * data.h * data.w;
        if self.x_noisy.len() != n * dim {
            return Err(Error::shape(
                "dsm per level",
                format!(
                    "images of {}×{}: the score network's DSM buffers hold {} values per image",
                    data.h,
                    data.w,
                    self.x_noisy.len() / n.max(1)
                ),
            ));
        }
        let sched = cfg.scorecl.schedule();
        let levels = sched.levels as usize;
        let batches = data.len() / n;
        let clean = gpu.tensor(&[n * dim], DType::F32)?;
        let mut host = Vec::new();
        let mut totals = vec![0.0f64; levels];
        for b in 0..batches {
            let idx: Vec<u32> = (b * n..(b + 1) * n).map(|i| i as u32).collect();
            data.gather(&idx, &mut host);
            gpu.write(&clean, bytemuck::cast_slice(&host))?;
            for (k, total) in totals.iter_mut().enumerate() {
                let sigma = sched.sigma(k as u32);
                let table = gpu.upload(&[sigma], &[1])?;
                gpu.write(&self.logsig, bytemuck::cast_slice(&vec![sigma.ln(); n]))?;
                let word = (1u64 << 40) + (b * levels + k) as u64;
                let noise = Philox::new(cfg.train.seed, stream_id(Purpose::StatNoise, word));
                let mut s = gpu.step("dsm per level");
                dsm::perturb(
                    &mut s,
                    &clean,
                    dim,
                    &table,
                    &noise,
                    &noise,
                    &self.x_noisy,
                    &self.eps,
                    &self.sigma,
                )?;
                self.net
                    .forward(&mut s, &self.dsm, &self.x_noisy, &self.sigma, &self.logsig)?;
                dsm::loss(
                    &mut s,
                    &self.dsm.score,
                    &self.eps,
                    &self.sigma,
                    dim,
                    &self.terms,
                    &self.dscore,
                    &self.loss,
                )?;
                let r = s.readback(&self.loss);
                let out = s.submit()?;
                *total += out.f32(r)[0] as f64;
            }
        }
        Ok(totals
            .into_iter()
            .map(|t| t / batches.max(1) as f64)
            .collect())
    }
}

/// The safetensors file of `scorecl.score_init`: the path itself when it
/// is a file, else `score.safetensors` in it or in the run's latest
/// checkpoint folder.
pub fn score_init_file(path: &std::path::Path) -> std::path::PathBuf {
    if path.is_file() {
        return path.to_path_buf();
    }
    let direct = path.join("score.safetensors");
    if direct.exists() {
        return direct;
    }
    match crate::train::RunDir::new(path).resume_dir() {
        Ok(dir) => dir.join("score.safetensors"),
        Err(_) => direct,
    }
}

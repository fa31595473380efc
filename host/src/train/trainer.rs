//! The ScoreCL trainer: one [`Step`] (one submit) per batch.
//!
//! Per step, in order on the GPU:
//! 1. two views of every image of the batch (augmentation from the core's
//!    per-sample parameters, streams `Augment` at 2·step and 2·step + 1);
//! 2. pair weights: the score network on both views (pixel scale) at each
//!    level of `scorecl.stat_sigmas` ([σ_ref] by default; the `dsm`
//!    statistic first noises the views, stream `StatNoise`), the per-view
//!    statistic averaged over the levels, then the core's transform
//!    (`ops::pair_weights`): n pair weights, or 2n per view; uniform while
//!    ScoreCL is off or during `scorecl.score_warmup_epochs`;
//! 3. encoder and heads on each view (batch statistics per view, as
//!    solo-learn), the weighted loss and its gradient, the backward passes;
//! 4. one DSM step of the score network on the clean images (σ per sample
//!    from the geometric schedule, streams `DsmNoise`/`DsmSigma` at step),
//!    with its own Adam (in a data-parallel run, while the encoder's and
//!    heads' gradients are exchanged);
//! 5. the optimizer step (LARS, SGD or Adam) at the warm-up + cosine rate.
//!
//! Nothing flows from the contrastive loss into the score network: its
//! weights enter the loss as constants. Everything random is a function of
//! (seed, step), so a resumed run repeats the same draws.

use crate::train::config::OptimizerName;
use scorecl_core::augment::{self, AugConfig, AugParams};
use scorecl_core::optim::{AdamConfig, LarsConfig, SgdConfig, WarmupCosine};
use scorecl_core::rng::{stream_id, Philox, Purpose};
use scorecl_core::weights::WeightMode;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::dist::{self, Link, Shard, Solo};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::ScoreNet;
use crate::nn::{Encoder, EncoderWorkspace, Mlp, MlpWorkspace, ParamStore};
use crate::ops::augment::{Augmenter, Normalize};
use crate::ops::elementwise::fill;
use crate::ops::{optim, pair_weights};
use crate::tensor::{DType, Tensor};
use crate::train::config::TrainConfig;
use crate::train::methods::{self, LrPolicy, SslLoss};
pub use crate::train::score_part::score_init_file;
pub(crate) use crate::train::score_part::ScorePart;
use crate::train::{TrainError, TrainResult};

/// Where a run stands: everything besides tensors that a resume needs.
/// The random streams are functions of (seed, step), so these counters
/// are the RNG state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TrainState {
    /// Optimizer steps taken (global, 0-based index of the next step).
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Steps taken in the current epoch.
    pub step_in_epoch: u64,
}

/// What one step read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step's global index.
    pub step: u64,
    /// Its epoch.
    pub epoch: u64,
    /// The weighted loss of the method.
    pub loss: f32,
    /// The DSM loss of the score network (when it trains).
    pub dsm_loss: Option<f32>,
    /// The pair weights used (n).
    pub weights: Vec<f32>,
    /// The per-view statistics behind the weights (2n: view 1 then view
    /// 2) when weights were computed: the score statistic S(v), or the
    /// hand-crafted strength A(v) in the `augment` mode.
    pub stats: Option<Vec<f32>>,
    /// Whether non-uniform weights were applied this step (ScoreCL on,
    /// shuffled or augment, after the warm-up).
    pub weighted: bool,
    /// The learning rate of the step.
    pub lr: f32,
}

impl StepReport {
    /// Mean and standard deviation of the pair weights.
    pub fn weight_stats(&self) -> (f32, f32) {
        let n = self.weights.len().max(1) as f64;
        let mean = self.weights.iter().map(|w| *w as f64).sum::<f64>() / n;
        let var = self
            .weights
            .iter()
            .map(|w| (*w as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean as f32, var.sqrt() as f32)
    }
}

/// A step's random draws given instead of drawn: the batch, both views and
/// the DSM step's noise. The whole-step reference test
/// (`host/tests/step_reference.rs`) feeds PyTorch's batch through
/// [`Trainer::step_given`]; everything after the draws (pair weights,
/// encoder, heads, loss, backward, optimizer, the DSM step) runs as in
/// [`Trainer::step`]. The augmentation that draws the views is checked
/// against torchvision on its own (`host/tests/augment.rs`).
#[derive(Debug, Clone, Copy)]
pub struct GivenInputs<'a> {
    /// The batch's clean images (n × 3 × h × w, in [0, 1]).
    pub clean: &'a [f32],
    /// Both views in pixel scale [0, 1], view 1's n then view 2's
    /// (2n × 3 × size × size): what the score network sees.
    pub views01: &'a [f32],
    /// The same views normalised (`data.normalize`): what the encoder sees.
    pub views: &'a [f32],
    /// The DSM step's noise ε (n × 3 × h × w).
    pub dsm_noise: &'a [f32],
    /// The DSM step's noise level σ per image (n).
    pub dsm_sigma: &'a [f32],
}

/// Optimizer of the encoder and heads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Optim {
    Sgd(SgdConfig),
    Lars(LarsConfig),
    Adam(AdamConfig),
}

impl Optim {
    fn from_config(cfg: &TrainConfig) -> Optim {
        let o = &cfg.optimizer;
        match o.name {
            OptimizerName::Sgd => Optim::Sgd(SgdConfig {
                momentum: o.momentum,
                weight_decay: o.weight_decay,
                ..SgdConfig::default()
            }),
            OptimizerName::Adam | OptimizerName::Adamw => Optim::Adam(AdamConfig {
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
                weight_decay: o.weight_decay,
                decoupled: o.name == OptimizerName::Adamw,
            }),
            OptimizerName::Lars => Optim::Lars(LarsConfig {
                momentum: o.momentum,
                weight_decay: o.weight_decay,
                eta: o.eta,
                clip_lr: o.clip_lr,
                exclude_bias_n_norm: o.exclude_bias_n_norm,
                ..LarsConfig::default()
            }),
        }
    }

    /// Names of the per-parameter state tensors (PyTorch's).
    pub(crate) fn slots(&self) -> &'static [&'static str] {
        match self {
            Optim::Sgd(_) | Optim::Lars(_) => &["momentum_buffer"],
            Optim::Adam(_) => &["exp_avg", "exp_avg_sq"],
        }
    }
}

/// The first slot whose guard bits are set in `flags`, as
/// [`TrainError::NonFiniteTensor`] with `name(slot)` (only called then).
pub(crate) fn check_guard(
    flags: &[u32],
    step: u64,
    epoch: u64,
    name: impl Fn(usize) -> String,
) -> TrainResult<()> {
    match flags.iter().position(|&bits| bits != 0) {
        None => Ok(()),
        Some(i) => Err(TrainError::NonFiniteTensor {
            step,
            epoch,
            tensor: name(i),
            what: optim::describe_guard(flags[i]),
        }),
    }
}

/// A step's tensors. The batch's images, views and activations are this
/// rank's (n = the global batch B / ranks); the loss's inputs, the pair
/// weights and their statistics are the global batch's (B), gathered from
/// the ranks in a data-parallel run (the same tensors as the local ones on
/// one rank).
struct Buffers {
    clean: Tensor,
    views01: Tensor,
    viewsn: Tensor,
    x: [Tensor; 2],
    /// The global batch's pair weights (B, or 2B per view).
    w: Tensor,
    /// The global batch's per-view statistics (2B).
    stats: Tensor,
    /// The projector's outputs of the global batch, the two views stacked
    /// (view 1's B, then view 2's).
    z: Tensor,
    /// The predictor's outputs, stacked (methods with a predictor).
    p: Option<Tensor>,
    /// With more than one rank: this rank's statistics (2n), projector and
    /// predictor outputs (2n rows), gathered into `stats`, `z` and `p`.
    local: Option<LocalBuffers>,
    /// The loss's gradient with respect to the last head's output
    /// (stacked, global), and this rank's rows of each view.
    dout: Tensor,
    doutv: [Tensor; 2],
    loss: Tensor,
    norms: Tensor,
    /// The optimizer's non-finite guard: a u32 per parameter tensor of
    /// the encoder and the heads.
    flags: Tensor,
}

/// A rank's own rows of the tensors the loss reads over the global batch.
struct LocalBuffers {
    stats: Tensor,
    z: Tensor,
    p: Option<Tensor>,
}

/// A training run in memory: models, optimizer states, buffers, counters.
pub struct Trainer<'g> {
    gpu: &'g Gpu,
    /// The resolved configuration.
    pub cfg: TrainConfig,
    /// The dataset.
    pub data: Dataset,
    /// The encoder (`model.arch`; torchvision names).
    pub encoder: Box<dyn Encoder>,
    /// Projector (and predictor) parameters (`projector.*`, `predictor.*`).
    pub heads: ParamStore,
    projector: Mlp,
    predictor: Option<Mlp>,
    /// Parameter groups with their learning-rate policy, as index ranges
    /// into the optimizer's order (the encoder's parameters, then the
    /// heads').
    groups: Vec<(std::ops::Range<usize>, LrPolicy)>,
    pub(crate) score: Option<ScorePart>,
    pub(crate) optim: Optim,
    /// Optimizer state per parameter: encoder's, then heads'.
    pub(crate) moments: Vec<Vec<Tensor>>,
    enc_ws: [EncoderWorkspace; 2],
    proj_ws: [MlpWorkspace; 2],
    pred_ws: Option<[MlpWorkspace; 2]>,
    loss: Box<dyn SslLoss>,
    augmenter: Augmenter,
    norm: Normalize,
    bufs: Buffers,
    schedule: WarmupCosine,
    /// Counters (the RNG state).
    pub state: TrainState,
    /// Time every kernel of the following steps with timestamp queries.
    pub profile: bool,
    /// (kernel, nanoseconds) per dispatch of the last profiled step.
    pub last_timings: Vec<(String, f64)>,
    /// Dispatches recorded by the last step.
    pub last_dispatches: usize,
    /// Host seconds of the last step until its submission returned
    /// (recording and encoding; not the wait for the GPU).
    pub last_host_seconds: f64,
    order: Option<(u64, Vec<u32>)>,
    host: Vec<f32>,
    /// The ranks of a data-parallel run ([`Solo`] alone).
    comm: Link,
    /// This rank's samples of the global batch.
    shard: Shard,
}

/// Steps per epoch (the last incomplete batch is dropped, as solo-learn).
pub fn steps_per_epoch(images: usize, batch: usize) -> u64 {
    (images / batch.max(1)) as u64
}

/// [`steps_per_epoch`] of `data`, or an error naming `train.batch_size`
/// when not even one batch fits.
pub(crate) fn checked_steps_per_epoch(data: &Dataset, batch: usize) -> Result<u64> {
    match steps_per_epoch(data.len(), batch) {
        0 => Err(Error::config(
            "train.batch_size",
            format!(
                "{batch}: larger than the dataset `{}` ({} images)",
                data.name,
                data.len()
            ),
        )),
        spe => Ok(spe),
    }
}

impl<'g> Trainer<'g> {
    /// A fresh run of `cfg` on `data`: models initialised from the seed.
    pub fn new(gpu: &'g Gpu, cfg: TrainConfig, data: Dataset) -> TrainResult<Trainer<'g>> {
        Self::with_comm(gpu, cfg, data, std::rc::Rc::new(Solo))
    }

    /// A fresh run of `cfg` on `data` as one rank of the data-parallel run
    /// `comm`: the global batch `train.batch_size` split evenly over the
    /// ranks ([`Shard`]), the losses, pair weights and (with
    /// `train.sync_batchnorm`) batch statistics of the global batch, the
    /// gradients summed over the ranks before every optimizer step. Every
    /// rank must be given the same configuration and data (checked).
    pub fn with_comm(
        gpu: &'g Gpu,
        cfg: TrainConfig,
        data: Dataset,
        comm: Link,
    ) -> TrainResult<Trainer<'g>> {
        cfg.validate()?;
        let global = cfg.train.batch_size;
        let ranks = comm.size();
        if global % ranks != 0 {
            return Err(Error::config(
                "train.batch_size",
                format!("{global}: the global batch must divide evenly over {ranks} ranks"),
            )
            .into());
        }
        let shard = Shard {
            rank: comm.rank(),
            size: ranks,
            local: global / ranks,
        };
        if ranks > 1 {
            let mine = serde_json::to_vec(&(&cfg, env!("CARGO_PKG_VERSION"), data.len()))
                .map_err(|e| Error::config("train", e.to_string()))?;
            dist::check_same(&*comm, "configuration, version or dataset", &mine)?;
        }
        let n = shard.local;
        let spe = checked_steps_per_epoch(&data, global)?;
        let size = cfg.data.size;
        let seed = cfg.train.seed;
        let init_seed = cfg.model.init_seed.unwrap_or(seed);
        // Sizes before allocation: a model or batch too large for the
        // device is refused naming its keys, not aborted.
        {
            let layers = methods::heads(&cfg, cfg.encoder_config().feature_dim()).layers();
            crate::train::fits::check(gpu, &cfg, &layers, Optim::from_config(&cfg).slots().len())?;
        }
        let mut encoder = cfg.build_encoder(gpu, init_seed)?;
        encoder.set_precision(cfg.conv_precision());
        let feat = encoder.feature_dim();
        let spec = methods::heads(&cfg, feat);
        let d = spec.out_dim;
        let mut heads = ParamStore::default();
        let projector = Mlp::new(gpu, &mut heads, "projector", &spec.projector, init_seed)?;
        let n_enc = encoder.store().params.len();
        let mut groups = vec![(0..n_enc + heads.params.len(), LrPolicy::Schedule)];
        let predictor = match &spec.predictor {
            Some((layers, policy)) => {
                let from = n_enc + heads.params.len();
                let p = Mlp::new(gpu, &mut heads, "predictor", layers, init_seed)?;
                groups.push((from..n_enc + heads.params.len(), *policy));
                Some(p)
            }
            None => None,
        };
        let optim = Optim::from_config(&cfg);
        let moments = encoder
            .store()
            .params
            .iter()
            .chain(&heads.params)
            .map(|p| {
                optim
                    .slots()
                    .iter()
                    .map(|_| gpu.zeros(&[p.value.len()]))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        let (h, w) = (data.h, data.w);
        let view = 3 * size * size;
        let score = if cfg.scorecl.weight_mode().needs_score_net() {
            let sp = ScorePart::new(gpu, &cfg, n, size, (h, w), init_seed)?;
            if let Some(path) = &cfg.scorecl.score_init {
                // A score network trained before (a run, or `probe
                // --train-score-epochs --out DIR`); a resumed run then
                // loads its own checkpoint over it.
                let file = score_init_file(std::path::Path::new(path));
                crate::nn::checkpoint::load(gpu, &sp.net.store, &file).map_err(|e| {
                    Error::config("scorecl.score_init", format!("{}: {e}", file.display()))
                })?;
            }
            Some(sp)
        } else {
            None
        };
        let loss = methods::loss(gpu, &cfg, global, d)?;
        let local = if ranks > 1 {
            Some(LocalBuffers {
                stats: t(2 * n)?,
                z: t(2 * n * d)?,
                p: predictor.as_ref().map(|_| t(2 * n * d)).transpose()?,
            })
        } else {
            None
        };
        let bufs = Buffers {
            clean: t(n * 3 * h * w)?,
            views01: t(2 * n * view)?,
            viewsn: t(2 * n * view)?,
            x: [t(n * view)?, t(n * view)?],
            w: t(cfg.scorecl.apply.count(global))?,
            stats: t(2 * global)?,
            z: t(2 * global * d)?,
            p: predictor.as_ref().map(|_| t(2 * global * d)).transpose()?,
            local,
            dout: t(2 * global * d)?,
            doutv: [t(n * d)?, t(n * d)?],
            loss: t(1)?,
            // A pair of squared norms per parameter tensor (LARS).
            norms: t(2 * (encoder.store().params.len() + heads.params.len()))?,
            flags: gpu.tensor(
                &[encoder.store().params.len() + heads.params.len()],
                crate::tensor::DType::U32,
            )?,
        };
        // View 1's backward pass ends before view 2's begins: the second
        // view's workspace shares the first's gradient buffers (declared
        // in this order, the owner is dropped first and the views right
        // after it, with no allocation between).
        let first_ws = encoder.workspace(gpu, n, size, size, false)?;
        let second_ws = encoder.workspace_sharing_gradients(gpu, &first_ws)?;
        let enc_ws = [first_ws, second_ws];
        let proj_ws = [projector.workspace(gpu, n)?, projector.workspace(gpu, n)?];
        let pred_ws = predictor
            .as_ref()
            .map(|p| Ok::<_, Error>([p.workspace(gpu, n)?, p.workspace(gpu, n)?]))
            .transpose()?;
        let mut augmenter = Augmenter::with_sources(gpu, 2 * n, n, (h, w), (size, size))?;
        augmenter.threshold = cfg.augment.solarize_threshold;
        let norm = cfg.normalize();
        let total = cfg.train.epochs * spe;
        let warmup = ((cfg.schedule.warmup_epochs as f64 * spe as f64).round() as u64).min(total);
        let schedule = WarmupCosine {
            base_lr: cfg.scaled_lr(),
            warmup_start_lr: cfg.schedule.warmup_start_lr,
            min_lr: cfg.schedule.min_lr,
            warmup_steps: warmup,
            total_steps: total,
        };
        schedule.validate().map_err(Error::from)?;
        Ok(Trainer {
            gpu,
            cfg,
            data,
            encoder,
            heads,
            projector,
            predictor,
            groups,
            score,
            optim,
            moments,
            enc_ws,
            proj_ws,
            pred_ws,
            loss,
            augmenter,
            norm,
            bufs,
            schedule,
            state: TrainState::default(),
            profile: false,
            last_timings: Vec::new(),
            last_dispatches: 0,
            last_host_seconds: 0.0,
            order: None,
            host: Vec::new(),
            comm,
            shard,
        })
    }

    /// This rank's place in the global batch (one rank: all of it).
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The ranks of the run.
    pub fn comm(&self) -> &Link {
        &self.comm
    }

    /// The convolutions' operand storage in effect (`train.precision`, or
    /// f32 where the device has no shader-f16).
    pub fn conv_precision(&self) -> crate::ops::conv::ConvPrecision {
        self.enc_ws[0].precision()
    }

    /// The device.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// The score network, when ScoreCL is on or shuffled.
    pub fn score_net(&self) -> Option<&ScoreNet> {
        self.score.as_ref().map(|s| &s.net)
    }

    /// The score network's DSM loss per noise level (σ_max first) on
    /// `data`, whose images must be the training images' size; None
    /// without a score network. See `ScorePart::dsm_per_level`.
    pub fn dsm_per_level(&self, data: &Dataset) -> Result<Option<Vec<f64>>> {
        self.score
            .as_ref()
            .map(|sp| sp.dsm_per_level(self.gpu, &self.cfg, data))
            .transpose()
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        steps_per_epoch(self.data.len(), self.cfg.train.batch_size)
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> u64 {
        self.cfg.train.epochs * self.steps_per_epoch()
    }

    /// Whether every step has been taken.
    pub fn finished(&self) -> bool {
        self.state.step >= self.total_steps()
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> &WarmupCosine {
        &self.schedule
    }

    /// Augmentation parameters of both views of this rank's samples of the
    /// current step (view 1's n samples, then view 2's), drawn by their
    /// global index.
    pub fn view_params(&self) -> TrainResult<Vec<AugParams>> {
        self.view_params_of(self.shard)
    }

    /// [`Trainer::view_params`] of the samples `shard` holds.
    fn view_params_of(&self, shard: Shard) -> TrainResult<Vec<AugParams>> {
        let n = shard.local;
        let (h, w) = (self.data.h as u32, self.data.w as u32);
        let mut out = Vec::with_capacity(2 * n);
        for v in 0..2u64 {
            let cfg: &AugConfig = match (v, &self.cfg.augment_view2) {
                (1, Some(c)) => c,
                _ => &self.cfg.augment,
            };
            let rng = Philox::new(
                self.cfg.train.seed,
                stream_id(Purpose::Augment, 2 * self.state.step + v),
            );
            for i in 0..n {
                let g = (shard.first() + i) as u32;
                out.push(augment::sample(&rng, g, h, w, cfg).map_err(Error::from)?);
            }
        }
        Ok(out)
    }

    fn batch_indices(&mut self) -> Vec<u32> {
        let (epoch, global) = (self.state.epoch, self.cfg.train.batch_size);
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.order = Some((epoch, self.data.order(self.cfg.train.seed, epoch)));
        }
        let order = &self.order.as_ref().unwrap().1;
        let s = self.state.step_in_epoch as usize * global + self.shard.first();
        order[s..s + self.shard.local].to_vec()
    }

    /// Runs one training step and advances the counters.
    pub fn step(&mut self) -> TrainResult<StepReport> {
        self.run_step(None)
    }

    /// Runs one training step on `given` draws instead of the run's own
    /// (batch, views, DSM noise) and advances the counters; see
    /// [`GivenInputs`].
    pub fn step_given(&mut self, given: &GivenInputs) -> TrainResult<StepReport> {
        let n = self.shard.local;
        let (img, size) = (3 * self.data.h * self.data.w, self.cfg.data.size);
        for (what, got, want) in [
            ("clean", given.clean.len(), n * img),
            ("views01", given.views01.len(), 2 * n * 3 * size * size),
            ("views", given.views.len(), 2 * n * 3 * size * size),
            ("dsm_noise", given.dsm_noise.len(), n * img),
            ("dsm_sigma", given.dsm_sigma.len(), n),
        ] {
            if got != want {
                return Err(Error::shape(
                    format!("given step input `{what}`"),
                    format!("{got} values, the step takes {want}"),
                )
                .into());
            }
        }
        self.run_step(Some(given))
    }

    fn run_step(&mut self, given: Option<&GivenInputs>) -> TrainResult<StepReport> {
        if self.finished() {
            return Err(Error::shape(
                "train",
                format!("the run is complete ({} steps)", self.total_steps()),
            )
            .into());
        }
        let gpu = self.gpu;
        let shard = self.shard;
        let (n, global) = (shard.local, shard.global());
        // Collectives only with more than one rank, so one rank's steps are
        // exactly those of a run without any.
        let comm = (shard.size > 1).then(|| self.comm.clone());
        let size = self.cfg.data.size;
        let view = 3 * size * size;
        let (st, seed) = (self.state, self.cfg.train.seed);
        match given {
            None => {
                let idx = self.batch_indices();
                self.data.gather(&idx, &mut self.host);
                gpu.write(&self.bufs.clean, bytemuck::cast_slice(&self.host))?;
            }
            Some(g) => {
                gpu.write(&self.bufs.clean, bytemuck::cast_slice(g.clean))?;
                gpu.write(&self.bufs.views01, bytemuck::cast_slice(g.views01))?;
                gpu.write(&self.bufs.viewsn, bytemuck::cast_slice(g.views))?;
            }
        }
        let params = self.view_params()?;
        let lr = self.schedule.lr(st.step);
        let static_lr = self.schedule.base_lr;
        let wcfg = self.cfg.scorecl.weights();
        let weighted =
            wcfg.mode != WeightMode::Uniform && st.epoch >= self.cfg.scorecl.score_warmup_epochs;
        // DSM noise levels, drawn as the kernel draws them; their logs are
        // uploaded for the FiLM conditioning.
        let sigmas = Philox::new(seed, stream_id(Purpose::DsmSigma, st.step));
        let noise = Philox::new(seed, stream_id(Purpose::DsmNoise, st.step));
        if let Some(sp) = &self.score {
            match given {
                None => sp.upload_log_sigmas(gpu, &self.cfg, &sigmas, shard.first())?,
                Some(g) => sp.write_given_noise(gpu, g.clean, g.dsm_noise, g.dsm_sigma)?,
            }
        }

        let mut s = gpu.step("train step");
        if self.profile {
            s = s.with_timestamps();
        }
        if let (Some(c), true) = (&comm, self.cfg.train.sync_batchnorm) {
            s = s.with_sync_batchnorm(c.clone());
        }
        let b = &self.bufs;
        self.encoder.store().zero_grads(&mut s)?;
        self.heads.zero_grads(&mut s)?;
        s.clear(&b.flags);
        // 1. Views (given ones are in place already).
        if given.is_none() {
            self.augmenter
                .run(&mut s, &b.clean, &params, &self.norm, &b.views01, &b.viewsn)?;
        }
        s.copy_range(&b.viewsn, 0, &b.x[0], 0, n * view)?;
        s.copy_range(&b.viewsn, n * view, &b.x[1], 0, n * view)?;
        // 2. Pair weights (constants for the encoder).
        // Over the global batch: every rank computes all B weights from the
        // gathered statistics (normalised by the global mean, shuffled over
        // the global batch).
        let shuffle = Philox::new(seed, stream_id(Purpose::Shuffle, st.step));
        if let (true, Some(sp)) = (weighted, &self.score) {
            match (&comm, &b.local) {
                (Some(c), Some(l)) => {
                    sp.view_statistics(
                        &mut s,
                        &self.cfg,
                        &b.views01,
                        view,
                        st.step,
                        Some(shard),
                        &l.stats,
                    )?;
                    dist::all_gather_views(
                        &mut s,
                        c,
                        shard,
                        "gather statistics",
                        &l.stats,
                        &b.stats,
                        2,
                        1,
                    )?;
                }
                _ => sp.view_statistics(
                    &mut s, &self.cfg, &b.views01, view, st.step, None, &b.stats,
                )?,
            }
            pair_weights::weights_from_stats(&mut s, &wcfg, &shuffle, &b.stats, &b.w)?;
        } else if weighted {
            // The hand-crafted control: strengths from the parameters (the
            // global batch's, drawn here without any exchange).
            let coef = self.cfg.scorecl.augment_strength();
            let (h, w) = (self.data.h as u32, self.data.w as u32);
            let all = match shard.size {
                1 => params.clone(),
                _ => self.view_params_of(Shard::whole(global))?,
            };
            let strengths: Vec<f32> = all
                .iter()
                .map(|p| scorecl_core::weights::augment_statistic(p, h, w, &coef))
                .collect();
            gpu.write(&b.stats, bytemuck::cast_slice(&strengths))?;
            pair_weights::weights_from_stats(&mut s, &wcfg, &shuffle, &b.stats, &b.w)?;
        } else {
            fill(&mut s, 1.0, &b.w)?;
        }
        // 3. Encoder, heads, loss, backward.
        let d = self.projector.out_dim();
        let (zl, pl) = match &b.local {
            Some(l) => (&l.z, l.p.as_ref()),
            None => (&b.z, b.p.as_ref()),
        };
        for v in 0..2 {
            self.encoder
                .forward(&mut s, &self.enc_ws[v], &b.x[v], true)?;
            self.projector.forward(
                &mut s,
                &self.heads,
                &self.proj_ws[v],
                &self.enc_ws[v].features,
                true,
            )?;
            s.copy_range(self.proj_ws[v].output(), 0, zl, v * n * d, n * d)?;
            if let (Some(pred), Some(pws), Some(p)) = (&self.predictor, &self.pred_ws, pl) {
                pred.forward(&mut s, &self.heads, &pws[v], self.proj_ws[v].output(), true)?;
                s.copy_range(pws[v].output(), 0, p, v * n * d, n * d)?;
            }
        }
        // The loss of the global batch: every rank gathers all 2B rows and
        // computes the whole loss and its gradient, and takes its own rows
        // of the gradient, which then hold every term's contribution (the
        // negatives of other ranks' anchors included).
        if let (Some(c), Some(l)) = (&comm, &b.local) {
            dist::all_gather_views(&mut s, c, shard, "gather projections", &l.z, &b.z, 2, d)?;
            if let (Some(lp), Some(p)) = (&l.p, &b.p) {
                dist::all_gather_views(&mut s, c, shard, "gather predictions", lp, p, 2, d)?;
            }
        }
        self.loss
            .forward_backward(&mut s, &b.z, b.p.as_ref(), &b.w, &b.dout, &b.loss)?;
        let loss_checks = self.loss.readbacks(&mut s);
        // With more than one rank, each group of gradients is exchanged as
        // soon as view 2's backward pass has added to it (the heads first,
        // then the encoder's blocks from the last), while the rest of the
        // backward pass and the score network's DSM step run; the optimizer
        // waits for them all. Each rank's gradient is its samples' share of
        // the global loss's: their sum is the gradient, the same on every
        // rank.
        let n_enc = self.encoder.store().params.len();
        let mut buckets: Vec<(dist::Started, std::ops::Range<usize>)> = Vec::new();
        let grads_of = |r: &std::ops::Range<usize>| -> Vec<&Tensor> {
            let enc = self.encoder.store().params.iter();
            let all: Vec<&Tensor> = enc.chain(&self.heads.params).map(|p| &p.grad).collect();
            all[r.clone()].to_vec()
        };
        for v in 0..2 {
            let row = v * global + shard.first();
            s.copy_range(&b.dout, row * d, &b.doutv[v], 0, n * d)?;
            let dfeat_src = if let (Some(pred), Some(pws)) = (&self.predictor, &self.pred_ws) {
                pred.backward(
                    &mut s,
                    &self.heads,
                    &pws[v],
                    self.proj_ws[v].output(),
                    &b.doutv[v],
                )?;
                pws[v].input_grad()
            } else {
                &b.doutv[v]
            };
            self.projector.backward(
                &mut s,
                &self.heads,
                &self.proj_ws[v],
                &self.enc_ws[v].features,
                dfeat_src,
            )?;
            let last = v == 1;
            let mut start =
                |s: &mut crate::step::Step<'g>, r: std::ops::Range<usize>| -> Result<()> {
                    if let (true, Some(c)) = (last, &comm) {
                        let name = "all-reduce gradients";
                        buckets.push((dist::all_reduce_start(s, c, name, &grads_of(&r))?, r));
                    }
                    Ok(())
                };
            start(&mut s, n_enc..n_enc + self.heads.params.len())?;
            self.encoder.backward_notify(
                &mut s,
                &self.enc_ws[v],
                &b.x[v],
                self.proj_ws[v].input_grad(),
                &mut |s, r| start(s, r),
            )?;
        }
        // 4. DSM step of the score network.
        if let Some(sp) = &self.score {
            let dim = 3 * self.data.h * self.data.w;
            let draws = given.is_none().then_some((&noise, &sigmas));
            let dp = comm.as_ref().map(|c| (c, shard));
            sp.dsm_step(
                &mut s,
                &b.clean,
                dim,
                draws,
                self.cfg.scorecl.lr,
                st.step,
                dp,
            )?;
        }
        for (h, r) in buckets {
            dist::all_reduce_finish(&mut s, h, "all-reduce gradients (wait)", &grads_of(&r))?;
        }
        // 5. Optimizer.
        let first = st.step == 0;
        let all = self.encoder.store().params.iter().chain(&self.heads.params);
        for (i, (p, m)) in all.zip(&self.moments).enumerate() {
            // The last group that holds i decides (the predictor's lies
            // within the whole model's).
            let policy = self.groups.iter().rev().find(|(r, _)| r.contains(&i));
            let lr = match policy.map(|(_, p)| *p) {
                Some(LrPolicy::Constant) => static_lr,
                Some(LrPolicy::Schedule) | None => lr,
            };
            let guard = optim::Guard {
                flags: &b.flags,
                slot: i,
            };
            match &self.optim {
                Optim::Sgd(c) => optim::sgd(&mut s, &p.value, &p.grad, &m[0], lr, c, first, guard)?,
                Optim::Lars(c) => optim::lars(
                    &mut s, &p.value, &p.grad, &m[0], &b.norms, i, lr, c, p.one_d, first, guard,
                )?,
                Optim::Adam(c) => optim::adam(
                    &mut s,
                    &p.value,
                    &p.grad,
                    &m[0],
                    &m[1],
                    lr,
                    (st.step + 1) as u32,
                    c,
                    guard,
                )?,
            }
        }
        self.loss.after_update(&mut s)?;
        let r_loss = s.readback(&b.loss);
        let r_w = s.readback(&b.w);
        let r_stats = weighted.then(|| s.readback(&b.stats));
        let r_dsm = self.score.as_ref().map(|sp| s.readback(&sp.loss));
        let r_flags = s.readback(&b.flags);
        let r_score_flags = self.score.as_ref().map(|sp| s.readback(sp.flags()));
        self.last_dispatches = s.dispatches();
        let mut r = s.submit()?;
        self.last_timings = std::mem::take(&mut r.timings);
        self.last_host_seconds = r.host_seconds;

        let report = StepReport {
            step: st.step,
            epoch: st.epoch,
            loss: r.f32(r_loss)[0],
            dsm_loss: r_dsm.map(|i| r.f32(i)[0]),
            weights: r.f32(r_w)[..self.cfg.scorecl.apply.count(global)].to_vec(),
            stats: r_stats.map(|i| r.f32(i)[..2 * global].to_vec()),
            weighted,
            lr,
        };
        let non_finite = |term: &str, value: f32| TrainError::NonFinite {
            step: st.step,
            epoch: st.epoch,
            term: term.to_string(),
            value,
        };
        self.loss.check(&r, &loss_checks)?;
        if !report.loss.is_finite() {
            return Err(non_finite(
                &format!("{} loss", self.cfg.method.name()),
                report.loss,
            ));
        }
        if let Some(v) = report.dsm_loss.filter(|v| !v.is_finite()) {
            return Err(non_finite("DSM loss of the score network", v));
        }
        if let Some(v) = report.weights.iter().find(|v| !v.is_finite()) {
            return Err(non_finite("pair weights", *v));
        }
        // The optimizer's guard: gradients, updated values and moments.
        check_guard(&r.u32(r_flags), st.step, st.epoch, |i| {
            self.param_names().nth(i).unwrap_or_default()
        })?;
        if let (Some(sp), Some(i)) = (&self.score, r_score_flags) {
            sp.check_flags(&r.u32(i), st.step, st.epoch)?;
        }
        self.state.step += 1;
        self.state.step_in_epoch += 1;
        if self.state.step_in_epoch == self.steps_per_epoch() {
            self.state.epoch += 1;
            self.state.step_in_epoch = 0;
        }
        Ok(report)
    }

    /// The encoder's (`backbone.…`) and heads' parameter names, in the
    /// optimizer's order (its moments and guard slots).
    fn param_names(&self) -> impl Iterator<Item = String> + '_ {
        let enc = self.encoder.store().params.iter();
        enc.map(|p| format!("backbone.{}", p.name))
            .chain(self.heads.params.iter().map(|p| p.name.clone()))
    }

    /// Names and tensors of every optimizer state, as PyTorch names them
    /// (`backbone.conv1.weight.momentum_buffer`, `projector.0.weight.exp_avg`,
    /// `score.conv_in.weight.exp_avg_sq`).
    pub fn optimizer_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (name, m) in self.param_names().zip(&self.moments) {
            for (slot, t) in self.optim.slots().iter().zip(m) {
                out.push((format!("{name}.{slot}"), t));
            }
        }
        if let Some(sp) = &self.score {
            for (p, [m, v]) in sp.net.store.params.iter().zip(&sp.moments) {
                out.push((format!("score.{}.exp_avg", p.name), m));
                out.push((format!("score.{}.exp_avg_sq", p.name), v));
            }
        }
        out
    }
}

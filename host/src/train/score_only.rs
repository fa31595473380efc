//! A score network trained alone by denoising score matching, with no
//! encoder: what `scorecl probe --train-score-epochs N` probes when there
//! is no ScoreCL run to take one from. The steps are the trainer's step 5
//! ([`ScorePart::dsm_step`]) on the same batches and random streams
//! (`DataOrder` per epoch, `DsmSigma`/`DsmNoise` per step) as a ScoreCL
//! run of the same configuration, so its network equals the one such a
//! run would have after the same steps.

use scorecl_core::rng::{stream_id, Philox, Purpose};

use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::nn::ScoreNet;
use crate::tensor::DType;
use crate::train::config::TrainConfig;
use crate::train::score_part::ScorePart;
use crate::train::trainer::checked_steps_per_epoch;
use crate::train::{TrainError, TrainResult};

/// Trains the score network of `cfg` (`[scorecl]` width, depth, lr, noise
/// schedule; `train.batch_size`, `train.seed`, `model.init_seed`) on
/// `data` for `epochs` epochs. `on_epoch(epoch, mean DSM loss)` is called
/// after each epoch.
pub fn train_score_alone(
    gpu: &Gpu,
    cfg: &TrainConfig,
    data: &Dataset,
    epochs: u64,
    mut on_epoch: impl FnMut(u64, f64),
) -> TrainResult<ScoreNet> {
    cfg.validate()?;
    let n = cfg.train.batch_size;
    let spe = checked_steps_per_epoch(data, n)?;
    let seed = cfg.train.seed;
    let init_seed = cfg.model.init_seed.unwrap_or(seed);
    let (h, w) = (data.h, data.w);
    let sp = ScorePart::new(gpu, cfg, n, cfg.data.size, (h, w), init_seed)?;
    let clean = gpu.tensor(&[n * 3 * h * w], DType::F32)?;
    let mut host = Vec::new();
    let mut step = 0u64;
    for epoch in 0..epochs {
        let order = data.order(seed, epoch);
        let mut sum = 0.0f64;
        for i in 0..spe as usize {
            data.gather(&order[i * n..(i + 1) * n], &mut host);
            gpu.write(&clean, bytemuck::cast_slice(&host))?;
            let sigmas = Philox::new(seed, stream_id(Purpose::DsmSigma, step));
            let noise = Philox::new(seed, stream_id(Purpose::DsmNoise, step));
            sp.upload_log_sigmas(gpu, cfg, &sigmas, 0)?;
            let mut s = gpu.step("score network step");
            let draws = Some((&noise, &sigmas));
            sp.dsm_step(&mut s, &clean, 3 * h * w, draws, cfg.scorecl.lr, step, None)?;
            let r = s.readback(sp.loss());
            let rf = s.readback(sp.flags());
            let rb = s.submit()?;
            let loss = rb.f32(r)[0];
            if !loss.is_finite() {
                return Err(TrainError::NonFinite {
                    step,
                    epoch,
                    term: "DSM loss of the score network".into(),
                    value: loss,
                });
            }
            sp.check_flags(&rb.u32(rf), step, epoch)?;
            sum += loss as f64;
            step += 1;
        }
        on_epoch(epoch, sum / spe as f64);
    }
    Ok(sp.net)
}

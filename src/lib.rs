//! The root package of the scorecl workspace: the main job (`cargo run
//! --release`, [`main_job`]), and in `tests/` and `examples/` the
//! end-to-end tests and runnable examples.

pub use scorecl_core as core;
pub use scorecl_host as host;

pub mod main_job {
    //! The main job: SimCLR with ScoreCL on the embedded dataset
    //! (`configs/default.toml`, compiled in), then the k-NN top-1 of the
    //! trained encoder next to that of the same encoder at initialisation.

    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use scorecl_host::data::Split;
    use scorecl_host::eval::{knn_eval, KnnReport};
    use scorecl_host::train::{run_training, RunDir, RunOptions, TrainConfig, Trainer};
    use scorecl_host::Gpu;

    /// The default configuration (`configs/default.toml`).
    pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.toml");

    /// What the main job measured.
    #[derive(Debug, Clone)]
    pub struct Report {
        /// k-NN of the encoder at initialisation.
        pub init: KnnReport,
        /// k-NN of the trained encoder.
        pub trained: KnnReport,
        /// The run directory (checkpoint, metrics, plots).
        pub run_dir: PathBuf,
        /// Wall time of the whole job, seconds.
        pub seconds: f64,
        /// Training images per second.
        pub images_per_s: f64,
    }

    /// `base`, or `base-2`, `base-3`, … : the first that holds no run.
    pub fn fresh_dir(base: &Path) -> PathBuf {
        (1..)
            .map(|i| {
                if i == 1 {
                    base.to_path_buf()
                } else {
                    PathBuf::from(format!("{}-{i}", base.display()))
                }
            })
            .find(|p| !p.join("checkpoint").exists())
            .expect("an unused run directory")
    }

    /// Trains `cfg` into `out` and measures the k-NN before and after.
    pub fn run(gpu: &Gpu, cfg: TrainConfig, out: &Path, progress: bool) -> anyhow::Result<Report> {
        let start = Instant::now();
        let train = cfg.data.open(Split::Train)?;
        let test = cfg.data.open(Split::Test)?;
        let (size, norm, knn) = (cfg.data.size, cfg.normalize(), cfg.eval.knn());
        if progress {
            println!(
                "{}, ScoreCL {}, data {} ({} training / {} test images, {}×{}), ResNet-18 width {}, \
                 batch {}, {} epochs\non {}",
                cfg.method.name(),
                cfg.scorecl.mode,
                cfg.data.dataset,
                train.len(),
                test.len(),
                train.h,
                train.w,
                cfg.model.width,
                cfg.train.batch_size,
                cfg.train.epochs,
                gpu.describe()
            );
        }
        let mut t = Trainer::new(gpu, cfg, train)?;
        let init = knn_eval(gpu, &t.encoder, &t.data, &test, size, &norm, &knn)?;
        if progress {
            println!("k-NN top-1 at initialisation: {:.2} %", init.top1);
        }
        let dir = RunDir::new(out);
        let s = run_training(
            &mut t,
            &dir,
            &RunOptions {
                max_steps: None,
                progress,
            },
        )?;
        // The monitor has evaluated the final encoder when it is on.
        let trained = match s.knn.filter(|_| s.finished) {
            Some(k) => k,
            None => knn_eval(gpu, &t.encoder, &t.data, &test, size, &norm, &knn)?,
        };
        Ok(Report {
            init,
            trained,
            run_dir: out.to_path_buf(),
            seconds: start.elapsed().as_secs_f64(),
            images_per_s: s.images_per_s,
        })
    }
}

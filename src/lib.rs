//! The root package of the scorecl workspace: the main job (`cargo run
//! --release`, [`main_job`]), and in `tests/` and `examples/` the
//! end-to-end tests and runnable examples.

pub use scorecl_core as core;
pub use scorecl_host as host;

pub mod main_job {
    //! The main job: SimCLR with ScoreCL on the project's real CIFAR-10
    //! subset (`data/cifar10-subset/`; `configs/default.toml`, compiled
    //! in), then the k-NN top-1 on its 1,000 validation images of the
    //! trained encoder next to that of the same encoder at initialisation
    //! and of the same encoder trained without ScoreCL (same seed).

    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use scorecl_host::data::Split;
    use scorecl_host::eval::{knn_eval, KnnReport};
    use scorecl_host::train::{run_training, RunDir, RunOptions, TrainConfig, Trainer};
    use scorecl_host::Gpu;

    /// The default configuration (`configs/default.toml`).
    pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.toml");

    /// The project's directory (where `data/` is).
    pub const PROJECT_DIR: &str = env!("CARGO_MANIFEST_DIR");

    /// What the main job measured.
    #[derive(Debug, Clone)]
    pub struct Report {
        /// k-NN of the encoder at initialisation.
        pub init: KnnReport,
        /// k-NN of the trained encoder.
        pub trained: KnnReport,
        /// k-NN of the same encoder trained without ScoreCL (when asked).
        pub off: Option<KnnReport>,
        /// The run directory (checkpoint, metrics, plots); the run without
        /// ScoreCL is in its `off/`.
        pub run_dir: PathBuf,
        /// Wall time of the whole job, seconds.
        pub seconds: f64,
        /// Training images per second (the ScoreCL run).
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

    /// A dataset directory given relative to the project
    /// (`cifar10:data/cifar10-subset`) found from any working directory:
    /// kept when it exists where the job runs, else taken from the
    /// project's directory.
    pub fn resolve_data(cfg: &mut TrainConfig) {
        let Some((kind, dir)) = cfg.data.dataset.split_once(':') else {
            return;
        };
        let path = Path::new(dir);
        if kind == "builtin" || path.is_absolute() || path.exists() {
            return;
        }
        let there = Path::new(PROJECT_DIR).join(path);
        if there.exists() {
            cfg.data.dataset = format!("{kind}:{}", there.display());
        }
    }

    /// Trains `cfg` into `out` and measures the k-NN before and after;
    /// with `compare_off` (and ScoreCL on in `cfg`), also the same
    /// configuration with `scorecl.mode = "off"` into `out/off`.
    pub fn run(
        gpu: &Gpu,
        cfg: TrainConfig,
        out: &Path,
        compare_off: bool,
        progress: bool,
    ) -> anyhow::Result<Report> {
        let start = Instant::now();
        use scorecl_host::core::weights::WeightMode;
        let off_cfg = (compare_off && cfg.scorecl.mode != WeightMode::Uniform).then(|| {
            let mut c = cfg.clone();
            c.scorecl.mode = WeightMode::Uniform;
            c
        });
        if progress {
            println!(
                "{}, ScoreCL {}{}, data {}, {} width {}, {}×{} views, batch {}, {} epochs\non {}",
                cfg.method.name(),
                cfg.scorecl.mode.name(),
                if off_cfg.is_some() {
                    " (and off, for comparison)"
                } else {
                    ""
                },
                cfg.data.dataset,
                cfg.model.arch.name(),
                cfg.model.width,
                cfg.data.size,
                cfg.data.size,
                cfg.train.batch_size,
                cfg.train.epochs,
                gpu.describe()
            );
        }
        let (init, trained, images_per_s) = train_one(gpu, cfg, out, true, progress)?;
        let off = match off_cfg {
            Some(c) => {
                if progress {
                    println!("the same without ScoreCL:");
                }
                Some(train_one(gpu, c, &out.join("off"), false, progress)?.1)
            }
            None => None,
        };
        Ok(Report {
            init: init.expect("measured at initialisation"),
            trained,
            off,
            run_dir: out.to_path_buf(),
            seconds: start.elapsed().as_secs_f64(),
            images_per_s,
        })
    }

    /// One training run: the k-NN at initialisation (with `init`), trained,
    /// and the training images per second.
    fn train_one(
        gpu: &Gpu,
        cfg: TrainConfig,
        out: &Path,
        init: bool,
        progress: bool,
    ) -> anyhow::Result<(Option<KnnReport>, KnnReport, f64)> {
        let train = cfg.data.open(Split::Train)?;
        let test = cfg.data.open(Split::Test)?;
        let (size, norm, knn) = (cfg.data.size, cfg.normalize(), cfg.eval.knn());
        if progress && init {
            println!(
                "{} training / {} validation images ({}×{})",
                train.len(),
                test.len(),
                train.h,
                train.w
            );
        }
        let mut t = Trainer::new(gpu, cfg, train)?;
        let before = if init {
            let k = knn_eval(gpu, t.encoder.as_ref(), &t.data, &test, size, &norm, &knn)?;
            if progress {
                println!("k-NN top-1 at initialisation: {:.2} %", k.top1);
            }
            Some(k)
        } else {
            None
        };
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
            None => knn_eval(gpu, t.encoder.as_ref(), &t.data, &test, size, &norm, &knn)?,
        };
        Ok((before, trained, s.images_per_s))
    }
}

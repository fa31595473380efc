//! Checks scorecl-core against the PyTorch-made cases in `tests/fixtures/`
//! (written by `tests/reference/generate.py`) and, when `SCORECL_FIXTURES`
//! names a directory, every case there too.
//!
//! Tolerance per element: |got − want| ≤ 1e-4 + 1e-3·|want|; k-NN labels
//! must be equal. The per-kind summary is written to stderr on every run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use scorecl_core::knn::{self, KnnConfig, KnnSet};
use scorecl_core::optim::{self, AdamConfig, LarsConfig, SgdConfig, WarmupCosine};
use scorecl_core::rng::Philox;
use scorecl_core::vicreg::VicRegConfig;
use scorecl_core::weights::{self, ScoreWeightConfig, WeightMode};
use scorecl_core::wmse::WmseConfig;
use scorecl_core::{dsm, simclr, simsiam, stats, vicreg, wmse, xent, GradPair, Views};
use serde_json::Value;

const ABS_TOL: f64 = 1e-4;
const REL_TOL: f64 = 1e-3;

/// Largest errors seen for one kind.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    cases: usize,
    max_abs: f64,
    /// Largest |got − want| / (ABS_TOL + REL_TOL·|want|): ≤ 1 passes.
    max_ratio: f64,
}

struct Case<'a> {
    file: &'a str,
    v: &'a Value,
    stats: Stats,
}

impl<'a> Case<'a> {
    fn field(&self, path: &[&str]) -> Result<&'a Value, String> {
        let mut cur = self.v;
        for p in path {
            cur = cur
                .get(p)
                .ok_or_else(|| format!("{}: missing field `{}`", self.file, path.join(".")))?;
        }
        Ok(cur)
    }

    fn f32s(&self, path: &[&str]) -> Result<Vec<f32>, String> {
        self.field(path)?
            .as_array()
            .ok_or_else(|| format!("{}: `{}` is not an array", self.file, path.join(".")))?
            .iter()
            .map(|x| {
                x.as_f64().map(|x| x as f32).ok_or_else(|| {
                    format!("{}: `{}` holds a non-number", self.file, path.join("."))
                })
            })
            .collect()
    }

    fn f64s(&self, path: &[&str]) -> Result<Vec<f64>, String> {
        self.field(path)?
            .as_array()
            .ok_or_else(|| format!("{}: `{}` is not an array", self.file, path.join(".")))?
            .iter()
            .map(|x| {
                x.as_f64().ok_or_else(|| {
                    format!("{}: `{}` holds a non-number", self.file, path.join("."))
                })
            })
            .collect()
    }

    fn u32s(&self, path: &[&str]) -> Result<Vec<u32>, String> {
        self.field(path)?
            .as_array()
            .ok_or_else(|| format!("{}: `{}` is not an array", self.file, path.join(".")))?
            .iter()
            .map(|x| {
                x.as_u64().map(|x| x as u32).ok_or_else(|| {
                    format!("{}: `{}` holds a non-integer", self.file, path.join("."))
                })
            })
            .collect()
    }

    fn num(&self, path: &[&str]) -> Result<f64, String> {
        self.field(path)?
            .as_f64()
            .ok_or_else(|| format!("{}: `{}` is not a number", self.file, path.join(".")))
    }

    fn uint(&self, path: &[&str]) -> Result<usize, String> {
        self.field(path)?
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| format!("{}: `{}` is not an integer", self.file, path.join(".")))
    }

    fn flag(&self, path: &[&str]) -> Result<bool, String> {
        self.field(path)?
            .as_bool()
            .ok_or_else(|| format!("{}: `{}` is not a boolean", self.file, path.join(".")))
    }

    fn cfg(&self, key: &str) -> Result<f64, String> {
        self.num(&["config", key])
    }

    /// Compares `got` with `expected.<key>` element by element.
    fn close(&mut self, key: &str, got: &[f32]) -> Result<(), String> {
        let want = self.f64s(&["expected", key])?;
        if want.len() != got.len() {
            return Err(format!(
                "{}: `expected.{key}` has {} values, the core gave {}",
                self.file,
                want.len(),
                got.len()
            ));
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = (*g as f64 - w).abs();
            let tol = ABS_TOL + REL_TOL * w.abs();
            self.stats.max_abs = self.stats.max_abs.max(err);
            self.stats.max_ratio = self.stats.max_ratio.max(err / tol);
            if err.is_nan() || err > tol {
                return Err(format!(
                    "{}: {key}[{i}] = {g}, PyTorch gives {w} (|err| {err:.3e} > tol {tol:.3e})",
                    self.file
                ));
            }
        }
        Ok(())
    }

    fn close1(&mut self, key: &str, got: f32) -> Result<(), String> {
        let want = self.num(&["expected", key])?;
        let err = (got as f64 - want).abs();
        let tol = ABS_TOL + REL_TOL * want.abs();
        self.stats.max_abs = self.stats.max_abs.max(err);
        self.stats.max_ratio = self.stats.max_ratio.max(err / tol);
        if err.is_finite() && err <= tol {
            Ok(())
        } else {
            Err(format!(
                "{}: {key} = {got}, PyTorch gives {want} (|err| {err:.3e} > tol {tol:.3e})",
                self.file
            ))
        }
    }
}

fn core_err(file: &str, e: scorecl_core::CoreError) -> String {
    format!("{file}: the core refused the case: {e}")
}

/// Checks one case; returns its kind and error statistics.
fn check_case(file: &str, v: &Value) -> Result<(String, Stats), String> {
    let mut c = Case {
        file,
        v,
        stats: Stats {
            cases: 1,
            ..Stats::default()
        },
    };
    for key in ["name", "kind", "config", "n", "d", "inputs", "expected"] {
        c.field(&[key])?;
    }
    let kind = c
        .field(&["kind"])?
        .as_str()
        .ok_or_else(|| format!("{file}: `kind` is not a string"))?
        .to_string();
    let n = c.uint(&["n"])?;
    let d = c.uint(&["d"])?;
    let e = |err| core_err(file, err);
    match kind.as_str() {
        "simclr" | "wmse" | "vicreg" => {
            let z1 = c.f32s(&["inputs", "z1"])?;
            let z2 = c.f32s(&["inputs", "z2"])?;
            let w = c.f32s(&["inputs", "weights"])?;
            let views = Views::new(&z1, &z2, n, d).map_err(e)?;
            let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
            let grads = Some(GradPair::new(&mut g1, &mut g2));
            let loss = match kind.as_str() {
                "simclr" => {
                    let cfg = simclr::SimClrConfig {
                        temperature: c.cfg("temperature")? as f32,
                    };
                    let mut s = vec![0.0; simclr::scratch_len(n, d)];
                    simclr::loss(views, Some(&w), &cfg, grads, &mut s).map_err(e)?
                }
                "wmse" => {
                    let cfg = WmseConfig {
                        eps: c.cfg("eps")? as f32,
                        w_size: c.uint(&["config", "w_size"])?,
                    };
                    let mut s = vec![0.0f64; wmse::scratch_len(n, d)];
                    wmse::loss(views, Some(&w), None, &cfg, grads, &mut s).map_err(e)?
                }
                _ => {
                    let cfg = VicRegConfig {
                        sim_coeff: c.cfg("sim_coeff")? as f32,
                        std_coeff: c.cfg("std_coeff")? as f32,
                        cov_coeff: c.cfg("cov_coeff")? as f32,
                    };
                    let mut s = vec![0.0; vicreg::scratch_len(d)];
                    vicreg::loss(views, Some(&w), &cfg, grads, &mut s)
                        .map_err(e)?
                        .loss
                }
            };
            c.close1("loss", loss)?;
            c.close("grad_z1", &g1)?;
            c.close("grad_z2", &g2)?;
        }
        "simsiam" => {
            let p1 = c.f32s(&["inputs", "p1"])?;
            let p2 = c.f32s(&["inputs", "p2"])?;
            let z1 = c.f32s(&["inputs", "z1"])?;
            let z2 = c.f32s(&["inputs", "z2"])?;
            let w = c.f32s(&["inputs", "weights"])?;
            let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
            let loss = simsiam::loss(
                Views::new(&p1, &p2, n, d).map_err(e)?,
                Views::new(&z1, &z2, n, d).map_err(e)?,
                Some(&w),
                Some(GradPair::new(&mut g1, &mut g2)),
            )
            .map_err(e)?;
            c.close1("loss", loss)?;
            c.close("grad_p1", &g1)?;
            c.close("grad_p2", &g2)?;
        }
        "dsm" => {
            let score = c.f32s(&["inputs", "score"])?;
            let noise = c.f32s(&["inputs", "noise"])?;
            let sigma = c.f32s(&["inputs", "sigma"])?;
            if sigma.len() != n {
                return Err(format!(
                    "{file}: `inputs.sigma` has {} values, n is {n}",
                    sigma.len()
                ));
            }
            let mut g = vec![0.0; n * d];
            let loss = dsm::loss(&score, &noise, &sigma, d, Some(&mut g)).map_err(e)?;
            c.close1("loss", loss)?;
            c.close("grad_score", &g)?;
        }
        "score_weights" => {
            let s1 = c.f32s(&["inputs", "s1"])?;
            let s2 = c.f32s(&["inputs", "s2"])?;
            let cfg = ScoreWeightConfig {
                mode: WeightMode::Score,
                gamma: c.cfg("gamma")? as f32,
                alpha: c.cfg("alpha")? as f32,
                w_max: c.cfg("w_max")? as f32,
                ..Default::default()
            };
            let mut w = vec![0.0; n];
            let mut stats = vec![0.0; 2 * n];
            weights::score_weights(
                Views::new(&s1, &s2, n, d).map_err(e)?,
                &cfg,
                &Philox::new(0, 0),
                &mut w,
                &mut stats,
            )
            .map_err(e)?;
            c.close("weights", &w)?;
        }
        "spearman" => {
            let x = c.f32s(&["inputs", "x"])?;
            let y = c.f32s(&["inputs", "y"])?;
            let mut idx = vec![0u32; n];
            let (mut rx, mut ry) = (vec![0.0; n], vec![0.0; n]);
            let rho = stats::spearman(&x, &y, &mut idx, &mut rx, &mut ry).map_err(e)?;
            let rank_x: Vec<f32> = rx.iter().map(|r| *r as f32).collect();
            c.close("rank_x", &rank_x)?;
            match (rho, c.field(&["expected", "rho"])?.is_null()) {
                (None, true) => {}
                (Some(r), false) => c.close1("rho", r as f32)?,
                (got, _) => {
                    return Err(format!(
                        "{file}: rho {got:?}, scipy gives {}",
                        c.v["expected"]["rho"]
                    ));
                }
            }
        }
        "xent" => {
            let logits = c.f32s(&["inputs", "logits"])?;
            let labels = c.u32s(&["inputs", "labels"])?;
            let classes = c.uint(&["config", "classes"])?;
            let mut g = vec![0.0; logits.len()];
            let loss = xent::softmax_xent(&logits, &labels, classes, &mut g).map_err(e)?;
            c.close1("loss", loss)?;
            c.close("grad_logits", &g)?;
            for (key, k) in [("top1", 1), ("top5", 5)] {
                let got = xent::top_k_correct(&logits, &labels, classes, k).map_err(e)?;
                let want = c.uint(&["expected", key])?;
                if got != want {
                    return Err(format!("{file}: {key} = {got}, PyTorch gives {want}"));
                }
            }
        }
        "knn" => {
            let train = c.f32s(&["inputs", "train"])?;
            let labels = c.u32s(&["inputs", "train_labels"])?;
            let test = c.f32s(&["inputs", "test"])?;
            let classes = c.uint(&["config", "classes"])?;
            let cfg = KnnConfig {
                k: c.uint(&["config", "k"])?,
                temperature: c.cfg("temperature")? as f32,
            };
            let set = KnnSet {
                train: &train,
                train_labels: &labels,
                test: &test,
                d,
                classes,
            };
            let mut preds = vec![0u32; n];
            let mut s = vec![0.0; knn::scratch_len(labels.len(), cfg.k, classes)];
            let mut si = vec![0u32; knn::index_scratch_len(labels.len(), cfg.k)];
            knn::predict(&set, &cfg, &mut preds, &mut s, &mut si).map_err(e)?;
            let want = c.u32s(&["expected", "pred"])?;
            if preds != want {
                return Err(format!(
                    "{file}: predictions {preds:?}, PyTorch gives {want:?}"
                ));
            }
        }
        "sgd" | "lars" => {
            let mut p = c.f32s(&["inputs", "params"])?;
            let grads = c.f32s(&["inputs", "grads"])?;
            let steps = c.uint(&["config", "steps"])?;
            if grads.len() != steps * n {
                return Err(format!("{file}: `inputs.grads` must hold steps × n values"));
            }
            let lr = c.cfg("lr")? as f32;
            let mut buf = vec![0.0; n];
            let sgd = SgdConfig {
                momentum: c.cfg("momentum")? as f32,
                dampening: c.cfg("dampening")? as f32,
                weight_decay: c.cfg("weight_decay")? as f32,
                nesterov: c.flag(&["config", "nesterov"])?,
            };
            for t in 0..steps {
                let g = &grads[t * n..(t + 1) * n];
                if kind == "sgd" {
                    optim::sgd_step(&mut p, g, &mut buf, lr, &sgd, t == 0).map_err(e)?;
                } else {
                    let cfg = LarsConfig {
                        momentum: sgd.momentum,
                        dampening: sgd.dampening,
                        weight_decay: sgd.weight_decay,
                        nesterov: sgd.nesterov,
                        eta: c.cfg("eta")? as f32,
                        eps: c.cfg("eps")? as f32,
                        clip_lr: c.flag(&["config", "clip_lr"])?,
                        exclude_bias_n_norm: c.flag(&["config", "exclude_bias_n_norm"])?,
                    };
                    let is_1d = c.flag(&["config", "is_1d"])?;
                    optim::lars_step(&mut p, g, &mut buf, lr, &cfg, is_1d, t == 0).map_err(e)?;
                }
            }
            c.close("params", &p)?;
            c.close("momentum", &buf)?;
        }
        "adam" | "adamw" => {
            let mut p = c.f32s(&["inputs", "params"])?;
            let grads = c.f32s(&["inputs", "grads"])?;
            let steps = c.uint(&["config", "steps"])?;
            if grads.len() != steps * n {
                return Err(format!("{file}: `inputs.grads` must hold steps × n values"));
            }
            let cfg = AdamConfig {
                beta1: c.cfg("beta1")? as f32,
                beta2: c.cfg("beta2")? as f32,
                eps: c.cfg("eps")? as f32,
                weight_decay: c.cfg("weight_decay")? as f32,
                decoupled: kind == "adamw",
            };
            let lr = c.cfg("lr")? as f32;
            let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
            for t in 0..steps {
                let g = &grads[t * n..(t + 1) * n];
                optim::adam_step(&mut p, g, &mut m, &mut v, lr, t as u32 + 1, &cfg).map_err(e)?;
            }
            c.close("params", &p)?;
            c.close("exp_avg", &m)?;
            c.close("exp_avg_sq", &v)?;
        }
        "warmup_cosine" => {
            let s = WarmupCosine {
                base_lr: c.cfg("base_lr")? as f32,
                warmup_start_lr: c.cfg("warmup_start_lr")? as f32,
                min_lr: c.cfg("min_lr")? as f32,
                warmup_steps: c.uint(&["config", "warmup_steps"])? as u64,
                total_steps: c.uint(&["config", "total_steps"])? as u64,
            };
            s.validate().map_err(e)?;
            let lrs: Vec<f32> = (0..n as u64).map(|t| s.lr(t)).collect();
            c.close("lr", &lrs)?;
        }
        other => return Err(format!("{file}: unknown kind `{other}`")),
    }
    Ok((kind, c.stats))
}

/// Checks every `*.json` in `dir`; returns per-kind statistics or every
/// failure (each naming its file).
fn check_dir(dir: &Path) -> Result<BTreeMap<String, Stats>, Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(err) => {
            return Err(vec![format!(
                "{}: cannot read directory: {err}",
                dir.display()
            )])
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut stats: BTreeMap<String, Stats> = BTreeMap::new();
    let mut failures = Vec::new();
    if files.is_empty() {
        failures.push(format!("{}: no *.json cases", dir.display()));
    }
    for path in files {
        let name = path.display().to_string();
        let result = std::fs::read_to_string(&path)
            .map_err(|err| format!("{name}: unreadable: {err}"))
            .and_then(|text| {
                serde_json::from_str::<Value>(&text)
                    .map_err(|err| format!("{name}: not valid JSON: {err}"))
            })
            .and_then(|v| check_case(&name, &v));
        match result {
            Ok((kind, s)) => {
                let e = stats.entry(kind).or_default();
                e.cases += s.cases;
                e.max_abs = e.max_abs.max(s.max_abs);
                e.max_ratio = e.max_ratio.max(s.max_ratio);
            }
            Err(msg) => failures.push(msg),
        }
    }
    if failures.is_empty() {
        Ok(stats)
    } else {
        Err(failures)
    }
}

fn report(dir: &Path, stats: &BTreeMap<String, Stats>) -> String {
    let total: usize = stats.values().map(|s| s.cases).sum();
    let mut out = format!("checked {total} reference cases in {}\n", dir.display());
    writeln!(
        out,
        "{:<14} {:>5} {:>12} {:>10}",
        "kind", "cases", "max |err|", "err/tol"
    )
    .unwrap();
    for (k, s) in stats {
        writeln!(
            out,
            "{:<14} {:>5} {:>12.3e} {:>10.4}",
            k, s.cases, s.max_abs, s.max_ratio
        )
        .unwrap();
    }
    out
}

fn run_dir(dir: &Path) -> BTreeMap<String, Stats> {
    match check_dir(dir) {
        Ok(stats) => {
            // Straight to the stderr handle: libtest captures print! and
            // eprint!, and the count must show in every run.
            let _ = std::io::stderr().write_all(report(dir, &stats).as_bytes());
            stats
        }
        Err(failures) => panic!(
            "{} failing case(s):\n{}",
            failures.len(),
            failures.join("\n")
        ),
    }
}

#[test]
fn repository_fixtures_match_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let stats = run_dir(&dir);
    for kind in [
        "simclr",
        "simsiam",
        "wmse",
        "vicreg",
        "dsm",
        "score_weights",
        "knn",
        "xent",
        "spearman",
    ] {
        let n = stats.get(kind).map_or(0, |s| s.cases);
        assert!(n >= 5, "kind {kind} has {n} cases, at least 5 are required");
    }
}

#[test]
fn extra_fixtures_from_env_match_pytorch() {
    if let Some(dir) = std::env::var_os("SCORECL_FIXTURES") {
        run_dir(Path::new(&dir));
    }
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scorecl-ref-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bad_cases_fail_naming_their_file() {
    let dir = scratch_dir("bad");
    let good = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dsm_n2_d1.json"),
    )
    .unwrap();
    let unknown = good.replace("\"kind\":\"dsm\"", "\"kind\":\"barlow\"");
    let missing = good.replace("\"noise\"", "\"noize\"");
    let wrong = {
        let mut v: Value = serde_json::from_str(&good).unwrap();
        let l = v["expected"]["loss"].as_f64().unwrap();
        v["expected"]["loss"] = Value::from(l * 1.01 + 1.0);
        v.to_string()
    };
    std::fs::write(dir.join("unknown_kind.json"), unknown).unwrap();
    std::fs::write(dir.join("missing_field.json"), missing).unwrap();
    std::fs::write(dir.join("not_json.json"), "{\"name\": ").unwrap();
    std::fs::write(dir.join("wrong_value.json"), wrong).unwrap();
    std::fs::write(dir.join("fine.json"), &good).unwrap();
    let failures = check_dir(&dir).expect_err("bad cases must fail");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(failures.len(), 4, "{failures:#?}");
    for (file, what) in [
        ("unknown_kind.json", "unknown kind `barlow`"),
        ("missing_field.json", "missing field `inputs.noise`"),
        ("not_json.json", "not valid JSON"),
        ("wrong_value.json", "loss"),
    ] {
        assert!(
            failures
                .iter()
                .any(|f| f.contains(file) && f.contains(what)),
            "no failure names {file} with `{what}`: {failures:#?}"
        );
    }
    let missing_dir = dir.join("nowhere");
    let failures = check_dir(&missing_dir).expect_err("a missing directory must fail");
    assert!(failures[0].contains("nowhere"), "{failures:?}");
}

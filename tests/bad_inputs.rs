//! The bad-input corpus: every way a user has been seen to hand scorecl a
//! wrong file, key or value, each run through the `scorecl` binary and
//! required to exit non-zero, without a panic or an abort, with a message
//! naming the file, key or tensor. Then the loaders (CIFAR, image folder,
//! TOML configuration, safetensors, `state.json`) fuzzed in process with
//! random and mutated bytes (proptest, a bounded number of cases each):
//! they may refuse, never panic.
#[path = "../host/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use scorecl_host::data::{Dataset, OpenOptions, Split};
use scorecl_host::train::TrainConfig;

fn scorecl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scorecl"));
    c.env("NODEVICE_SELECT", "1").env_remove("WGPU_BACKEND");
    c
}

fn preset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(name)
}

/// Runs `args` (with `env`), requires a clean failure and returns stderr.
fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = scorecl();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    // A Rust abort (alloc failure) or a signal has no exit code; a panic
    // exits 101.
    let code = out.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "{args:?}: exit {code:?} (an abort or a panic?): {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

fn check(case: &str, err: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            err.contains(n),
            "case `{case}`: the message does not name `{n}`:\n{err}"
        );
    }
}

/// A copy of `preset` with `key = value` set in `[section]` (replacing the
/// key where the preset has it).
fn with(dir: &Path, name: &str, section: &str, key: &str, value: &str) -> PathBuf {
    let text = std::fs::read_to_string(preset("tiny-simclr.toml")).unwrap();
    let mut out = String::new();
    let mut current = String::new();
    let mut done = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if current == section && !done {
                out.push_str(&format!("{key} = {value}\n"));
                done = true;
            }
            current = t.trim_matches(['[', ']']).to_string();
        } else if current == section && t.split('=').next().map(str::trim) == Some(key) {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !done {
        if current != section {
            out.push_str(&format!("[{section}]\n"));
        }
        out.push_str(&format!("{key} = {value}\n"));
    }
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

fn record(label: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072).map(|i| (i % 251) as u8));
    r
}

fn cifar(dir: &Path, batches: &[Vec<u8>]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, b) in batches.iter().enumerate() {
        std::fs::write(dir.join(format!("data_batch_{}.bin", i + 1)), b).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), record(3)).unwrap();
}

fn png(path: &Path) {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 10, 10]));
    img.save(path).unwrap();
}

#[test]
fn bad_data_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cfg = preset("tiny-simclr.toml");
    let cfg = cfg.to_str().unwrap();
    let out = |n: &str| t.join(n).to_string_lossy().into_owned();
    let train = |data: String, o: &str| -> String {
        fails(
            &["train", "--config", cfg, "--data", &data, "--out", &out(o)],
            &[],
        )
    };
    let good: Vec<u8> = (0..5).flat_map(|i| record(i as u8)).collect();

    // CIFAR: missing, truncated, empty, mislabelled.
    let e = train(format!("cifar10:{}", out("none")), "r1");
    check(
        "missing CIFAR dir",
        &e,
        &["data_batch_1.bin", "cannot read"],
    );
    let d = t.join("trunc");
    cifar(&d, &vec![good[..5000].to_vec(); 5]);
    let e = train(format!("cifar10:{}", d.display()), "r2");
    check(
        "truncated CIFAR file",
        &e,
        &["data_batch_1.bin", "3073-byte records"],
    );
    let d = t.join("empty");
    cifar(
        &d,
        &[
            Vec::new(),
            good.clone(),
            good.clone(),
            good.clone(),
            good.clone(),
        ],
    );
    let e = train(format!("cifar10:{}", d.display()), "r3");
    check("empty CIFAR file", &e, &["data_batch_1.bin"]);
    let d = t.join("label");
    let mut bad = good.clone();
    bad[3073] = 11;
    cifar(
        &d,
        &[good.clone(), bad, good.clone(), good.clone(), good.clone()],
    );
    let e = train(format!("cifar10:{}", d.display()), "r4");
    check("mislabelled CIFAR record", &e, &["data_batch_2.bin", "11"]);

    // Image folders: a corrupt JPEG, a zero-byte PNG, an empty class.
    let mk = |name: &str| {
        let root = t.join(name);
        for split in ["train", "val"] {
            for class in ["cat", "dog"] {
                let dir = root.join(split).join(class);
                std::fs::create_dir_all(&dir).unwrap();
                png(&dir.join("a.png"));
                png(&dir.join("b.png"));
            }
        }
        root
    };
    let root = mk("jpeg");
    std::fs::write(
        root.join("train/cat/bad.jpg"),
        b"\xff\xd8\xff\xe0 not a jpeg",
    )
    .unwrap();
    let e = train(format!("folder:{}", root.display()), "r5");
    check("corrupt JPEG", &e, &["bad.jpg"]);
    let root = mk("zero");
    std::fs::write(root.join("train/dog/zero.png"), b"").unwrap();
    let e = train(format!("folder:{}", root.display()), "r6");
    check("zero-byte PNG", &e, &["zero.png"]);
    let root = mk("emptyclass");
    std::fs::create_dir_all(root.join("train/bird")).unwrap();
    let e = train(format!("folder:{}", root.display()), "r7");
    check("empty class folder", &e, &["bird"]);

    // An unknown dataset kind.
    let e = train("imagenet1k:/x".into(), "r8");
    check("unknown dataset kind", &e, &["data.dataset", "imagenet1k"]);
}

#[test]
fn bad_configurations_and_options_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let run = |cfg: &Path, extra: &[&str]| -> String {
        let o = t.join("run").to_string_lossy().into_owned();
        let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--out", &o];
        args.extend_from_slice(extra);
        fails(&args, &[])
    };
    let cases: &[(&str, &str, &str, &str, &[&str])] = &[
        ("negative lr", "optimizer", "lr", "-1.0", &["optimizer.lr"]),
        ("wrong type", "optimizer", "lr", "\"fast\"", &["lr"]),
        ("unknown key", "train", "epochz", "3", &["epochz"]),
        ("unknown method", "", "method", "\"byol\"", &["byol"]),
        ("batch 0", "train", "batch_size", "0", &["train.batch_size"]),
        (
            "batch above the data",
            "train",
            "batch_size",
            "100000",
            &["batch"],
        ),
        ("0 epochs", "train", "epochs", "0", &["train.epochs"]),
        ("size 0", "data", "size", "0", &["data.size"]),
        (
            "huge width",
            "model",
            "width",
            "200000",
            &["model.width", "bytes"],
        ),
        (
            "unknown stem",
            "model",
            "stem",
            "\"round\"",
            &["model.stem"],
        ),
        (
            "unknown optimizer",
            "optimizer",
            "name",
            "\"adagrad\"",
            &["adagrad"],
        ),
    ];
    for (i, (case, section, key, value, needles)) in cases.iter().enumerate() {
        let f = if section.is_empty() {
            let p = t.join(format!("c{i}.toml"));
            let text = std::fs::read_to_string(preset("tiny-simclr.toml")).unwrap();
            let text = text
                .lines()
                .map(|l| {
                    if l.starts_with(&format!("{key} =")) {
                        format!("{key} = {value}")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&p, text).unwrap();
            p
        } else {
            with(t, &format!("c{i}.toml"), section, key, value)
        };
        let e = run(&f, &[]);
        check(case, &e, needles);
    }
    // lr 1e30: the run starts and stops at the first non-finite value,
    // naming the step and the term, with a checkpoint kept.
    let f = with(t, "huge_lr.toml", "optimizer", "lr", "1e30");
    let e = run(&f, &["--max-steps", "3"]);
    check("lr 1e30", &e, &["step", "finite"]);
    // Malformed TOML, binary garbage, an empty file, a missing file.
    let f = t.join("malformed.toml");
    std::fs::write(&f, "[train\nepochs = 3\n").unwrap();
    check("malformed TOML", &run(&f, &[]), &["malformed.toml"]);
    let f = t.join("garbage.toml");
    std::fs::write(&f, [0xffu8, 0xfe, 0x00, 0x13, 0x80, 0x9f, 0x00, 0x01]).unwrap();
    check("binary garbage", &run(&f, &[]), &["garbage.toml"]);
    let f = t.join("empty.toml");
    std::fs::write(&f, "").unwrap();
    check(
        "empty file",
        &run(&f, &[]),
        &["empty.toml", "--allow-defaults"],
    );
    check(
        "missing config",
        &run(&t.join("absent.toml"), &[]),
        &["absent.toml", "cannot read"],
    );
    // Bad command-line values.
    let p = preset("tiny-simclr.toml");
    check(
        "negative epochs",
        &run(&p, &["--epochs=-3"]),
        &["--epochs", "-3"],
    );
    check(
        "batch not a number",
        &run(&p, &["--batch-size", "many"]),
        &["--batch-size"],
    );
    check(
        "unknown --scorecl",
        &run(&p, &["--scorecl", "maybe"]),
        &["scorecl.mode"],
    );
    check(
        "unknown --device",
        &run(&p, &["--device", "tpu"]),
        &["tpu", "cpu"],
    );
    // An output path that is a file.
    let file = t.join("afile");
    std::fs::write(&file, "x").unwrap();
    let e = fails(
        &[
            "train",
            "--config",
            p.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ],
        &[],
    );
    check("output path is a file", &e, &["afile"]);
    // An unknown WGPU_BACKEND.
    let e = fails(
        &["bench", "gemm", "--only", "square 256"],
        &[("WGPU_BACKEND", "nosuchbackend")],
    );
    check("unknown WGPU_BACKEND", &e, &["WGPU_BACKEND"]);
}

#[test]
fn bad_checkpoints_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cfg = preset("tiny-simclr.toml");
    let run = t.join("run");
    let out = scorecl()
        .args(["train", "--config", cfg.to_str().unwrap(), "--out"])
        .arg(&run)
        .args(["--max-steps", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ck = run.join("checkpoint");
    let eval = || fails(&["eval", "knn", "--checkpoint", run.to_str().unwrap()], &[]);
    let resume = || fails(&["train", "--resume", run.to_str().unwrap()], &[]);
    let backbone = ck.join("backbone.safetensors");
    let good = std::fs::read(&backbone).unwrap();
    // Truncated, altered, and missing weights.
    std::fs::write(&backbone, &good[..good.len() / 3]).unwrap();
    check(
        "truncated safetensors (eval)",
        &eval(),
        &["backbone.safetensors"],
    );
    check(
        "truncated safetensors (resume)",
        &resume(),
        &["backbone.safetensors"],
    );
    let mut nan = good.clone();
    let at = nan.len() - 8;
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&backbone, &nan).unwrap();
    check(
        "altered weights",
        &eval(),
        &["backbone.safetensors", "SHA-256"],
    );
    std::fs::remove_file(&backbone).unwrap();
    check("missing weights", &resume(), &["backbone.safetensors"]);
    std::fs::write(&backbone, &good).unwrap();
    // A corrupt state.json.
    let state = ck.join("state.json");
    let text = std::fs::read(&state).unwrap();
    std::fs::write(&state, b"{\"format\": 2, \"state\": ").unwrap();
    check("corrupt state.json", &resume(), &["state.json"]);
    std::fs::write(&state, &text).unwrap();
    // Missing checkpoints.
    let e = fails(&["eval", "knn", "--checkpoint", "/no/such/run"], &[]);
    check("missing checkpoint", &e, &["/no/such/run"]);
    let e = fails(&["train", "--resume", t.to_str().unwrap()], &[]);
    check("nothing to resume", &e, &["nothing to resume"]);
}

fn cifar_from(bytes: &[u8]) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    for i in 1..=5 {
        std::fs::write(tmp.path().join(format!("data_batch_{i}.bin")), bytes).unwrap();
    }
    std::fs::write(tmp.path().join("test_batch.bin"), bytes).unwrap();
    let spec = format!("cifar10:{}", tmp.path().display());
    Dataset::open_with(&spec, &OpenOptions::new(Split::Train, 16))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The CIFAR reader on random bytes and on a valid record with bytes
    /// flipped: a dataset or an error naming the file, never a panic.
    #[test]
    fn the_cifar_reader_never_panics(
        random in proptest::collection::vec(any::<u8>(), 0..8000),
        flips in proptest::collection::vec((0usize..6146, any::<u8>()), 0..8),
        cut in 0usize..6147,
    ) {
        if let Err(e) = cifar_from(&random) {
            prop_assert!(e.contains("data_batch_1.bin"), "{}", e);
        }
        let mut two: Vec<u8> = record(1).into_iter().chain(record(2)).collect();
        for (i, v) in flips {
            two[i] = v;
        }
        two.truncate(cut.max(1));
        if let Err(e) = cifar_from(&two) {
            prop_assert!(e.contains(".bin"), "{}", e);
        }
    }

    /// The image-folder reader on random bytes as image files.
    #[test]
    fn the_image_folder_reader_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        png_prefix in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        for split in ["train", "val"] {
            let dir = tmp.path().join(split).join("c");
            std::fs::create_dir_all(&dir).unwrap();
            png(&dir.join("ok.png"));
            let mut b = if png_prefix { b"\x89PNG\r\n\x1a\n".to_vec() } else { Vec::new() };
            b.extend_from_slice(&bytes);
            std::fs::write(dir.join("x.png"), &b).unwrap();
        }
        let spec = format!("folder:{}", tmp.path().display());
        if let Err(e) = Dataset::open_with(&spec, &OpenOptions::new(Split::Train, 8)) {
            prop_assert!(e.to_string().contains("x.png"), "{}", e);
        }
    }

    /// The configuration parser on a preset with characters replaced,
    /// inserted or cut, and on random text.
    #[test]
    fn the_configuration_parser_never_panics(
        edits in proptest::collection::vec((0usize..2000, any::<char>()), 1..6),
        cut in 0usize..2000,
        random in ".{0,300}",
    ) {
        let text = std::fs::read_to_string(preset("tiny-simclr.toml")).unwrap();
        let mut chars: Vec<char> = text.chars().collect();
        for (i, c) in edits {
            let i = i % chars.len();
            chars[i] = c;
        }
        chars.truncate(cut.max(1).min(chars.len()));
        let mutated: String = chars.into_iter().collect();
        let _ = TrainConfig::parse(&mutated);
        let _ = TrainConfig::parse(&random);
    }

    /// The safetensors reader and `state.json` on a real file with bytes
    /// changed or cut.
    #[test]
    fn the_checkpoint_readers_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        state in ".{0,200}",
    ) {
        use scorecl_host::nn::checkpoint;
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("w.safetensors");
        let tensors = vec![
            ("a".to_string(), safetensors::Dtype::F32, vec![2, 3], vec![0u8; 24]),
            ("b".to_string(), safetensors::Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()),
        ];
        checkpoint::write_tensors(&f, &tensors, &[("step", "3".into())]).unwrap();
        let mut bytes = std::fs::read(&f).unwrap();
        for (i, v) in flips {
            let i = i.index(bytes.len());
            bytes[i] = v;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        std::fs::write(&f, &bytes).unwrap();
        if let Err(e) = checkpoint::read_f32_tensors(&f) {
            prop_assert!(e.to_string().contains("w.safetensors"), "{}", e);
        }
        std::fs::write(tmp.path().join("state.json"), &state).unwrap();
        if let Err(e) = scorecl_host::train::run::verify_checkpoint(tmp.path()) {
            prop_assert!(e.to_string().contains("state.json"), "{}", e);
        }
    }
}

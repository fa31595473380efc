//! `scorecl compare`'s statistics: the paired difference to `off` and its
//! Student-t interval, against closed forms checkable by hand and against
//! SciPy (`tests/reference/paired_stats.py` →
//! `tests/fixtures/paired/paired_stats.json`), and the pairing by seed.

use scorecl_host::train::compare::{mean_std, paired, summarise, RunResult};

fn close(what: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

/// The t quantiles with closed forms: one degree of freedom is Cauchy's,
/// tan(π(p − ½)); two are (2p − 1)/√(2p(1 − p)). The interval is the mean
/// ± t·s/√n.
#[test]
fn intervals_of_one_and_two_degrees_of_freedom_follow_the_closed_forms() {
    let p = 0.975f64;
    let t1 = (std::f64::consts::PI * (p - 0.5)).tan();
    let t2 = (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
    // Two pairs 1.5 and −0.5: mean 0.5, s = √2.
    let a = paired(&[1.5, -0.5], 0.95).unwrap();
    close("n2 t", a.t, t1, 1e-9);
    close("n2 mean", a.mean, 0.5, 1e-12);
    close("n2 std", a.std, 2f64.sqrt(), 1e-12);
    close("n2 lo", a.lo, 0.5 - t1 * 2f64.sqrt() / 2f64.sqrt(), 1e-9);
    close("n2 hi", a.hi, 0.5 + t1, 1e-9);
    // Three pairs 1, 2, 3: mean 2, s = 1.
    let b = paired(&[1.0, 2.0, 3.0], 0.95).unwrap();
    close("n3 t", b.t, t2, 1e-9);
    close("n3 lo", b.lo, 2.0 - t2 / 3f64.sqrt(), 1e-9);
    close("n3 hi", b.hi, 2.0 + t2 / 3f64.sqrt(), 1e-9);
    assert_eq!((b.n, b.level), (3, 0.95));
}

#[test]
fn paired_statistics_match_scipy() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/paired/paired_stats.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let diffs: Vec<f64> = c["diffs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let level = c["level"].as_f64().unwrap();
        let p = paired(&diffs, level).unwrap();
        let f = |k: &str| c[k].as_f64().unwrap();
        close(&format!("{name} mean"), p.mean, f("mean"), 1e-12);
        close(&format!("{name} std"), p.std, f("std"), 1e-12);
        close(&format!("{name} t"), p.t, f("t"), 1e-9);
        close(&format!("{name} lo"), p.lo, f("lo"), 1e-9);
        close(&format!("{name} hi"), p.hi, f("hi"), 1e-9);
        assert_eq!(p.n, diffs.len(), "{name}");
    }
}

#[test]
fn no_interval_without_two_pairs_or_with_a_bad_level() {
    assert_eq!(paired(&[], 0.95), None);
    assert_eq!(paired(&[1.0], 0.95), None);
    assert_eq!(paired(&[1.0, 2.0], 1.0), None);
    assert_eq!(paired(&[1.0, 2.0], f64::NAN), None);
    assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
}

fn run(method: &str, weighting: &str, seed: u64, top1: f64) -> RunResult {
    RunResult {
        method: method.into(),
        weighting: weighting.into(),
        seed,
        top1,
        seconds: 0.0,
        linear_top1: None,
        dsm: None,
    }
}

/// Differences are taken seed by seed against `off` of the same method;
/// a seed without its `off` run is left out of the pairs but not of the
/// cell's mean.
#[test]
fn cells_pair_each_seed_with_off_of_the_same_method() {
    let results = vec![
        run("simclr", "off", 0, 30.0),
        run("simclr", "off", 1, 32.0),
        run("simclr", "off", 2, 34.0),
        run("simclr", "on", 2, 35.0),
        run("simclr", "on", 0, 29.0),
        run("simclr", "on", 1, 33.0),
        run("simclr", "on", 3, 50.0),
        run("vicreg", "on", 0, 10.0),
        run("vicreg", "off", 0, 12.0),
    ];
    let cells = summarise(&results);
    let names: Vec<(&str, &str)> = cells
        .iter()
        .map(|c| (c.method.as_str(), c.weighting.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("simclr", "off"),
            ("simclr", "on"),
            ("vicreg", "on"),
            ("vicreg", "off")
        ]
    );
    assert_eq!(cells[0].vs_off, None);
    let on = &cells[1];
    assert_eq!(on.seeds, [2, 0, 1, 3]);
    close("on mean", on.mean, (35.0 + 29.0 + 33.0 + 50.0) / 4.0, 1e-12);
    // Seeds 2, 0, 1 pair: +1, −1, +1.
    let want = paired(&[1.0, -1.0, 1.0], 0.95).unwrap();
    assert_eq!(on.vs_off, Some(want));
    // One pair only: no interval.
    assert_eq!(cells[2].vs_off, None);
    let md = scorecl_host::train::compare::table(&results);
    assert!(
        md.contains(&format!(
            "{:+.2} [{:+.2}, {:+.2}] (3)",
            want.mean, want.lo, want.hi
        )),
        "{md}"
    );
    assert!(md.contains("| 3 | — | 50.00 | — | — |"), "{md}");
}

/// The linear probe's cells pair seeds like k-NN's, over the runs that
/// have a linear result only, and get their own table; the DSM table
/// shows each level's mean loss over seeds divided by ½·D.
#[test]
fn linear_cells_and_dsm_levels_are_summarised_from_the_runs_that_have_them() {
    use scorecl_host::train::compare::{summarise_linear, DsmLevels};
    let with = |mut r: RunResult, lin: Option<f64>, dsm: Option<[f64; 2]>| {
        r.linear_top1 = lin;
        r.dsm = dsm.map(|l| DsmLevels {
            sigma: vec![1.0, 0.1],
            loss: l.to_vec(),
            zero: 10.0,
        });
        r
    };
    let results = vec![
        with(run("simclr", "off", 0, 30.0), Some(40.0), None),
        with(run("simclr", "off", 1, 31.0), Some(42.0), None),
        with(run("simclr", "off", 2, 31.0), None, None),
        with(run("simclr", "on", 0, 29.0), Some(41.0), Some([4.0, 9.0])),
        with(run("simclr", "on", 1, 33.0), Some(45.0), Some([6.0, 10.0])),
        with(run("simclr", "on", 2, 33.0), Some(47.0), Some([5.0, 9.5])),
    ];
    let lin = summarise_linear(&results);
    assert_eq!(lin[0].seeds, [0, 1]);
    assert_eq!(lin[1].seeds, [0, 1, 2]);
    close("linear on mean", lin[1].mean, 44.333333333333336, 1e-12);
    // Seed 2 has no linear off run: pairs +1, +3.
    assert_eq!(lin[1].vs_off, paired(&[1.0, 3.0], 0.95));
    let md = scorecl_host::train::compare::table(&results);
    assert!(md.contains("linear top-1 (%)"), "{md}");
    // (4 + 6 + 5)/3 ÷ 10 = 0.5; (9 + 10 + 9.5)/3 ÷ 10 = 0.95.
    assert!(md.contains("| simclr | on | 0.500 | 0.950 |"), "{md}");
    assert!(md.contains("σ 1.000 | σ 0.100 |"), "{md}");
    // Without linear results, no linear table.
    let bare: Vec<RunResult> = results
        .iter()
        .cloned()
        .map(|mut r| {
            r.linear_top1 = None;
            r
        })
        .collect();
    assert!(summarise_linear(&bare).is_empty());
    assert!(!scorecl_host::train::compare::table(&bare).contains("Linear probe"));
}

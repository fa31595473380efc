//! The example on arrays from files (raw little-endian f32, as NumPy's
//! `tofile` writes them): same numbers as the core computes, and a wrong
//! file size is named.

use std::process::Command;

fn write(path: &std::path::Path, v: &[f32]) {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, b).unwrap();
}

#[test]
fn reads_arrays_from_files_and_names_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, dim, d) = (4usize, 6usize, 3usize);
    let s1: Vec<f32> = (0..n * dim).map(|i| (i as f32 * 0.37).sin()).collect();
    let s2: Vec<f32> = s1
        .iter()
        .enumerate()
        .map(|(k, x)| x * (1.0 + (k / dim) as f32))
        .collect();
    let z: Vec<f32> = (0..2 * n * d).map(|i| (i as f32 * 0.91).cos()).collect();
    let p = |name: &str| tmp.path().join(name);
    write(&p("s1.f32"), &s1);
    write(&p("s2.f32"), &s2);
    write(&p("z.f32"), &z);
    let run = |z_file: &str| {
        Command::new(env!("CARGO_BIN_EXE_scorecl-core-example"))
            .args([n.to_string(), dim.to_string(), d.to_string()])
            .arg(p("s1.f32"))
            .arg(p("s2.f32"))
            .arg(p(z_file))
            .output()
            .unwrap()
    };
    let out = run("z.f32");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The weights the core gives for these fields, as the example prints them.
    let mut w = vec![0.0f32; n];
    let mut st = vec![0.0f32; 2 * n];
    scorecl_core::weights::score_weights(
        scorecl_core::Views::new(&s1, &s2, n, dim).unwrap(),
        &Default::default(),
        &scorecl_core::rng::Philox::new(
            2023,
            scorecl_core::rng::stream_id(scorecl_core::rng::Purpose::Shuffle, 0),
        ),
        &mut w,
        &mut st,
    )
    .unwrap();
    assert!(
        text.contains(&format!("ScoreCL pair weights   {w:.3?}")),
        "{text}"
    );
    write(&p("short.f32"), &z[..5]);
    let out = run("short.f32");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("short.f32") && err.contains("expected 96"),
        "{err}"
    );
}

//! Every WGSL module the host ships, in every variant it builds, parses and
//! validates with naga. No GPU needed.

mod common;

use common::capabilities;
use naga::valid::{ValidationFlags, Validator};
use scorecl_shaders::{Define, MODULES};

#[test]
fn every_module_and_variant_validates() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for m in MODULES {
        assert!(
            m.variants.first().is_some_and(|v| v.is_empty()),
            "{}: the f32 path comes first",
            m.name
        );
        for defines in m.variants {
            let src = m.source(defines);
            let tag = format!("{} {:?}", m.name, defines);
            let module = match naga::front::wgsl::parse_str(&src) {
                Ok(module) => module,
                Err(e) => {
                    failures.push(format!("{tag}: parse: {}", e.emit_to_string(&src)));
                    continue;
                }
            };
            let mut v = Validator::new(ValidationFlags::all(), capabilities(defines));
            if let Err(e) = v.validate(&module) {
                failures.push(format!("{tag}: validate: {}", e.emit_to_string(&src)));
                continue;
            }
            assert!(!module.entry_points.is_empty(), "{tag}: no entry points");
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("validated {checked} module variants");
}

#[test]
fn preprocessor_keeps_the_selected_branch() {
    let src =
        "a\n//#if SUBGROUPS\nb\n//#if F16\nc\n//#else\nd\n//#endif\n//#else\ne\n//#endif\nf\n";
    let keep = |defs: &[Define]| -> Vec<String> {
        scorecl_shaders::preprocess(src, defs)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(keep(&[]), ["a", "e", "f"]);
    assert_eq!(keep(&[Define::Subgroups]), ["a", "b", "d", "f"]);
    assert_eq!(
        keep(&[Define::Subgroups, Define::F16]),
        ["a", "b", "c", "f"]
    );
    assert_eq!(
        scorecl_shaders::preprocess(src, &[]).lines().count(),
        src.lines().count()
    );
    let m = scorecl_shaders::module("elementwise").unwrap();
    assert!(m.source(&[Define::F16]).starts_with("enable f16;\n"));
}

//! Every WGSL module the host ships, in every variant it builds, parses and
//! validates with naga, and takes no `%` of signed integers (undefined in
//! GLSL for negative operands). No GPU needed.

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
            let info = match v.validate(&module) {
                Ok(info) => info,
                Err(e) => {
                    failures.push(format!("{tag}: validate: {}", e.emit_to_string(&src)));
                    continue;
                }
            };
            for at in signed_remainders(&module, &info, &src) {
                failures.push(format!(
                    "{tag}: `%` on signed integers at {at}: GLSL leaves it undefined for \
                     negative operands and naga writes it as is (take it on u32 or floats)"
                ));
            }
            assert!(!module.entry_points.is_empty(), "{tag}: no entry points");
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("validated {checked} module variants");
}

/// Where `module` takes `%` of signed integers (line:column in `src`).
fn signed_remainders(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    src: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut check = |f: &naga::Function, fi: &naga::valid::FunctionInfo| {
        for (h, e) in f.expressions.iter() {
            if let naga::Expression::Binary {
                op: naga::BinaryOperator::Modulo,
                left,
                ..
            } = *e
            {
                let ty = fi[left].ty.inner_with(&module.types);
                if ty.scalar_kind() == Some(naga::ScalarKind::Sint) {
                    let at = f.expressions.get_span(h).location(src);
                    found.push(format!("{}:{}", at.line_number, at.line_position));
                }
            }
        }
    };
    for (h, f) in module.functions.iter() {
        check(f, &info[h]);
    }
    for (i, ep) in module.entry_points.iter().enumerate() {
        check(&ep.function, info.get_entry_point(i));
    }
    found
}

/// The check above finds what it is for.
#[test]
fn a_signed_remainder_is_found() {
    let src = "@group(0) @binding(0) var<storage, read_write> x: array<i32>;\n\
               @compute @workgroup_size(1) fn main() { x[0] = x[1] % 3; x[2] = i32(u32(x[3]) % 3u); }\n";
    let module = naga::front::wgsl::parse_str(src).unwrap();
    let info = Validator::new(ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap();
    assert_eq!(signed_remainders(&module, &info, src), ["2:48"]);
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

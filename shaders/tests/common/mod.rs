//! Shared by the naga tests: the validator capabilities a variant needs.

use naga::valid::Capabilities;
use scorecl_shaders::Define;

/// The capabilities the variant's defines switch on.
pub fn capabilities(defines: &[Define]) -> Capabilities {
    let mut caps = Capabilities::empty();
    for d in defines {
        caps |= match d {
            Define::Subgroups => Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER,
            Define::F16 | Define::HalfA | Define::HalfB => Capabilities::SHADER_FLOAT16,
            Define::Coop => Capabilities::COOPERATIVE_MATRIX,
        };
    }
    caps
}

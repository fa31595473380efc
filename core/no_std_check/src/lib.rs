//! Proof that scorecl-core is `#![no_std]`: this staticlib defines its own
//! panic handler, which collides with std's if anything in the dependency
//! graph links std. Built by `scripts/test.sh`.
#![no_std]

use scorecl_core::rng::Philox;
use scorecl_core::weights::{self, ScoreWeightConfig};
use scorecl_core::{simclr, Views};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Weighted NT-Xent of two 2 × 2 batches with ScoreCL weights, so the
/// symbols are really linked.
#[no_mangle]
pub extern "C" fn scorecl_no_std_check() -> f32 {
    let z1 = [1.0f32, 0.5, -0.25, 2.0];
    let z2 = [0.75f32, 0.5, 0.0, 1.5];
    let mut w = [0.0f32; 2];
    let mut stats = [0.0f32; 4];
    let s = Views::new(&z1, &z2, 2, 2).unwrap();
    weights::score_weights(s, &ScoreWeightConfig::default(), &Philox::new(1, 2), &mut w, &mut stats)
        .unwrap();
    let mut scratch = [0.0f32; 16];
    simclr::loss(s, Some(&w), &Default::default(), None, &mut scratch).unwrap_or(f32::NAN)
}

//! Philox4x32-10 against Random123's published known-answer vectors, the
//! 16-bit multiply against u64 arithmetic, the distributions derived from
//! it, and the augmentation parameters' ranges and determinism.

use proptest::prelude::*;
use scorecl_core::augment::{self, AugConfig, AugParams};
use scorecl_core::rng::{self, Philox, Purpose};

/// Random123 `kat_vectors`, philox4x32 10 rounds: (counter, key, output).
/// These are published constants of the reference implementation, the only
/// way to show the generator is Philox and not a look-alike.
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
        [0xffffffff, 0xffffffff],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

#[test]
fn philox_matches_random123_known_answers() {
    for (ctr, key, want) in KAT {
        assert_eq!(
            rng::philox4x32_10(ctr, key),
            want,
            "ctr {ctr:x?} key {key:x?}"
        );
    }
}

#[test]
fn stream_layout_is_the_documented_counter() {
    let p = Philox::new(0x299f31d0_a4093822, 0x03707344_13198a2e);
    assert_eq!(p.block(0x85a308d3_243f6a88), KAT[2].2);
    let b = p.block(5);
    assert_eq!([p.u32_at(20), p.u32_at(21), p.u32_at(22), p.u32_at(23)], b);
    assert_eq!(
        rng::stream_id(Purpose::Augment, 5),
        (1u64 << 56) | 5,
        "purpose in the top byte"
    );
    assert_ne!(
        rng::stream_id(Purpose::DsmNoise, 5),
        rng::stream_id(Purpose::DsmSigma, 5)
    );
}

proptest! {
    #[test]
    fn mulhilo32_is_the_64_bit_product(a in any::<u32>(), b in any::<u32>()) {
        let p = a as u64 * b as u64;
        prop_assert_eq!(rng::mulhilo32(a, b), ((p >> 32) as u32, p as u32));
    }

    #[test]
    fn unit_floats_stay_in_range(x in any::<u32>()) {
        let u = rng::unit_f32(x);
        prop_assert!((0.0..1.0).contains(&u));
        let o = rng::open_unit_f32(x);
        prop_assert!(o > 0.0 && o <= 1.0);
        let [a, b] = rng::box_muller(x, x.rotate_left(7));
        prop_assert!(a.is_finite() && b.is_finite());
    }

    #[test]
    fn fill_normal_equals_normal_at_bitwise(
        seed in any::<u64>(),
        start in prop_oneof![any::<u64>(), 0u64..64, (u64::MAX - 64)..=u64::MAX],
        len in 0usize..40,
    ) {
        // fill_normal computes each block and Box–Muller pair once; any
        // start (block and pair boundaries, the wrap at 2⁶⁴) gives the
        // numbers normal_at gives one by one.
        let p = Philox::new(seed, 7);
        let mut v = vec![0.0f32; len];
        p.fill_normal(start, &mut v);
        for (k, x) in v.iter().enumerate() {
            prop_assert_eq!(x.to_bits(), p.normal_at(start.wrapping_add(k as u64)).to_bits());
        }
    }

    #[test]
    fn below_is_in_range(i in any::<u64>(), n in 1u32..1000) {
        prop_assert!(Philox::new(1, 2).below_at(i, n) < n);
    }
}

#[test]
fn edge_words_map_to_the_edges() {
    assert_eq!(rng::unit_f32(0), 0.0);
    assert_eq!(rng::unit_f32(u32::MAX), 1.0 - 2f32.powi(-24));
    assert_eq!(rng::open_unit_f32(u32::MAX), 1.0);
    assert_eq!(rng::open_unit_f32(0), 2f32.powi(-24));
}

/// Moments of 2¹⁷ draws from a fixed seed: the sample mean and variance of
/// a correct generator are within 4 standard errors of 0 and 1 (mean
/// s.e. 1/√N ≈ 0.0028, variance s.e. √(2/N) ≈ 0.0039).
#[test]
fn normal_and_uniform_moments() {
    let p = Philox::new(42, rng::stream_id(Purpose::DsmNoise, 0));
    let n = 1usize << 17;
    let mut v = vec![0.0f32; n];
    p.fill_normal(0, &mut v);
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(mean.abs() < 4.0 * 0.0028, "normal mean {mean}");
    assert!((var - 1.0).abs() < 4.0 * 0.0039, "normal variance {var}");
    // Uniform: mean 1/2, variance 1/12.
    p.fill_uniform(0, &mut v);
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    assert!((mean - 0.5).abs() < 4.0 * (1.0 / 12f64).sqrt() / (n as f64).sqrt());
    assert!((var - 1.0 / 12.0).abs() < 0.002, "uniform variance {var}");
    // Each normal of a block is its Box–Muller pair element.
    let b = p.block(3);
    let [c0, s0] = rng::box_muller(b[0], b[1]);
    let [c1, s1] = rng::box_muller(b[2], b[3]);
    assert_eq!(
        [
            p.normal_at(12),
            p.normal_at(13),
            p.normal_at(14),
            p.normal_at(15)
        ],
        [c0, s0, c1, s1]
    );
}

#[test]
fn shuffle_is_a_permutation_and_seeded() {
    let p = Philox::new(9, 1);
    let mut a: Vec<u32> = (0..100).collect();
    let mut b = a.clone();
    p.shuffle(0, &mut a);
    p.shuffle(0, &mut b);
    assert_eq!(a, b, "same seed, same order");
    assert_ne!(a, (0..100).collect::<Vec<_>>(), "it moved something");
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    let mut c: Vec<u32> = (0..100).collect();
    Philox::new(10, 1).shuffle(0, &mut c);
    assert_ne!(a, c, "another seed, another order");
}

fn params(seed: u64, sample: u32, h: u32, w: u32, cfg: &AugConfig) -> AugParams {
    let p = Philox::new(seed, rng::stream_id(Purpose::Augment, 0));
    augment::sample(&p, sample, h, w, cfg).unwrap()
}

proptest! {
    /// Crops lie inside the image; a crop from the ten tries has its area
    /// fraction and aspect ratio in range (up to rounding to whole pixels);
    /// factors lie in their ranges; the order is a permutation.
    #[test]
    fn augmentation_parameters_in_range(seed in any::<u64>(), sample in any::<u32>(), h in 8u32..300, w in 8u32..300) {
        let cfg = AugConfig::imagenet(1);
        let p = params(seed, sample, h, w, &cfg);
        prop_assert!(p.height >= 1 && p.width >= 1);
        prop_assert!(p.top + p.height <= h && p.left + p.width <= w);
        let centred = p.top == (h - p.height) / 2 && p.left == (w - p.width) / 2;
        if !centred {
            // Whole-pixel sides are rounded from exact ones within ±½ pixel:
            // some exact box in that range has its area fraction in
            // [0.08, 1] and its ratio in [3/4, 4/3].
            let (ch, cw) = (p.height as f64, p.width as f64);
            let hw = (h * w) as f64;
            prop_assert!((cw + 0.5) * (ch + 0.5) / hw >= 0.08 && (cw - 0.5) * (ch - 0.5) / hw <= 1.0,
                "area {}", cw * ch / hw);
            prop_assert!((cw + 0.5) / (ch - 0.5).max(0.5) >= 0.75 && (cw - 0.5) / (ch + 0.5) <= 4.0 / 3.0,
                "ratio {}", cw / ch);
        }
        let mut order = p.jitter_order;
        order.sort();
        prop_assert_eq!(order, [0, 1, 2, 3]);
        if p.jitter {
            for f in [p.brightness, p.contrast, p.saturation] {
                prop_assert!((0.6..=1.4).contains(&f));
            }
            prop_assert!((-0.1..=0.1).contains(&p.hue));
        } else {
            prop_assert_eq!((p.brightness, p.contrast, p.saturation, p.hue), (1.0, 1.0, 1.0, 0.0));
        }
        prop_assert!(p.blur_sigma == 0.0 || (0.1..=2.0).contains(&p.blur_sigma));
        prop_assert_eq!(p, params(seed, sample, h, w, &cfg), "deterministic");
    }
}

/// Rates over 20 000 samples match the configured probabilities within 4
/// standard errors (√(p(1−p)/N) ≤ 0.0036).
#[test]
fn augmentation_rates_match_the_probabilities() {
    let n = 20_000u32;
    for (view, blur, sol) in [(0usize, 1.0f64, 0.0f64), (1, 0.1, 0.2)] {
        let cfg = AugConfig::imagenet(view);
        let ps: Vec<AugParams> = (0..n).map(|i| params(5, i, 64, 64, &cfg)).collect();
        let rate =
            |f: &dyn Fn(&AugParams) -> bool| ps.iter().filter(|p| f(p)).count() as f64 / n as f64;
        let tol = 4.0 * 0.0036;
        assert!((rate(&|p| p.flip) - 0.5).abs() < tol);
        assert!((rate(&|p| p.jitter) - 0.8).abs() < tol);
        assert!((rate(&|p| p.gray) - 0.2).abs() < tol);
        assert!((rate(&|p| p.blur_sigma > 0.0) - blur).abs() < tol);
        assert!((rate(&|p| p.solarize) - sol).abs() < tol);
        // Every one of the 24 jitter orders occurs (1/24 each).
        let mut seen = std::collections::HashSet::new();
        for p in ps.iter().filter(|p| p.jitter) {
            seen.insert(p.jitter_order);
        }
        assert_eq!(seen.len(), 24);
        // Mean crop area fraction: torchvision's sampler on a square image
        // averages about (0.08 + 1)/2 = 0.54 before clipping to the image.
        let mean_area = ps
            .iter()
            .map(|p| (p.height * p.width) as f64 / 4096.0)
            .sum::<f64>()
            / n as f64;
        assert!((0.35..0.6).contains(&mean_area), "mean area {mean_area}");
    }
    // Different samples and different streams give different parameters.
    let cfg = AugConfig::cifar();
    assert_ne!(params(5, 0, 32, 32, &cfg), params(5, 1, 32, 32, &cfg));
    let other = Philox::new(5, rng::stream_id(Purpose::Augment, 1));
    assert_ne!(
        params(5, 0, 32, 32, &cfg),
        augment::sample(&other, 0, 32, 32, &cfg).unwrap()
    );
}

#[test]
fn crop_fallback_is_torchvision_centre_crop() {
    // Draws that never fit (scale 1 with an extreme ratio on a tall image):
    // u = 0.999 for every slot gives aspect 4/3 and area 1, too wide.
    let u = |_slot: u64| 0.999f32;
    // A 10 × 100 image (ratio 10 > 4/3): height kept, width = round(10·4/3) = 13.
    assert_eq!(
        augment::crop_box(10, 100, [1.0, 1.0], [0.75, 4.0 / 3.0], &u),
        [0, 43, 10, 13]
    );
    // A 100 × 10 image (ratio 0.1 < 3/4): width kept, height = round(10/0.75) = 13.
    assert_eq!(
        augment::crop_box(100, 10, [1.0, 1.0], [0.75, 4.0 / 3.0], &u),
        [43, 0, 13, 10]
    );
}

#[test]
fn bad_augmentation_config_names_the_field() {
    let bad = AugConfig {
        crop_scale: [0.5, 0.2],
        ..AugConfig::default()
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("crop_scale"), "{err}");
    let bad = AugConfig {
        hue: 0.7,
        ..AugConfig::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("hue"));
    let p = Philox::new(0, 0);
    assert!(augment::sample(&p, 0, 0, 5, &AugConfig::default()).is_err());
}

//! Philox on the GPU against scorecl-core: raw words and uniforms must be
//! bit-identical; normals within 2e-6 absolute (log, sqrt, cos, sin are
//! not correctly rounded in WGSL).
mod common;

use common::gpus;
use scorecl_host::core::rng::{stream_id, Philox, Purpose};
use scorecl_host::ops::rng;
use scorecl_host::DType;

#[test]
fn words_uniforms_and_normals_match_the_core() {
    for gpu in gpus() {
        for (seed, stream, start, n) in [
            (0u64, 0u64, 0u64, 1usize),
            (42, stream_id(Purpose::DsmNoise, 7), 5, 1029),
            (u64::MAX, u64::MAX, (1u64 << 32) - 3, 17),
            (7, 9, (1u64 << 34) - 5, 12),
            (3, 1, (1u64 << 40) + (1u64 << 32) - 2, 9),
        ] {
            let p = Philox::new(seed, stream);
            let words = gpu.tensor(&[n], DType::U32).unwrap();
            let uni = gpu.tensor(&[n], DType::F32).unwrap();
            let nor = gpu.tensor(&[n], DType::F32).unwrap();
            let mut s = gpu.step("rng");
            rng::fill_u32(&mut s, &p, start, &words).unwrap();
            rng::fill_uniform(&mut s, &p, start, &uni).unwrap();
            rng::fill_normal(&mut s, &p, start, 0.5, 2.0, &nor).unwrap();
            let (iw, iu, inn) = (s.readback(&words), s.readback(&uni), s.readback(&nor));
            let out = s.submit().unwrap();
            let (w, u, z) = (out.u32(iw), out.f32(iu), out.f32(inn));
            for i in 0..n {
                let at = start.wrapping_add(i as u64);
                assert_eq!(w[i], p.u32_at(at), "word {at} of ({seed}, {stream})");
                assert_eq!(u[i].to_bits(), p.uniform_at(at).to_bits(), "uniform {at}");
                let want = 0.5 + 2.0 * p.normal_at(at);
                assert!(
                    (z[i] - want).abs() <= 2e-6 * 2.0 * 8.0,
                    "normal {at}: {} vs {want}",
                    z[i]
                );
            }
        }
    }
}

#[test]
fn known_answer_block_on_the_gpu() {
    // Random123's first known-answer vector (counter 0, key 0) is words
    // 0..4 of stream 0 of seed 0.
    for gpu in gpus() {
        let words = gpu.tensor(&[4], DType::U32).unwrap();
        let mut s = gpu.step("kat");
        rng::fill_u32(&mut s, &Philox::new(0, 0), 0, &words).unwrap();
        let i = s.readback(&words);
        assert_eq!(
            s.submit().unwrap().u32(i)[..4],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
    }
}

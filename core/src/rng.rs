//! Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
//! 1, 2, 3", SC 2011), the counter-based generator of Random123, cuRAND and
//! JAX. WGSL has no 64-bit integers, so the 32×32→64 multiply is written
//! with 16-bit halves ([`mulhilo32`]); the shader uses the same function and
//! is bit-identical.
//!
//! Counter layout used throughout the project:
//! `ctr = [block_lo, block_hi, stream_lo, stream_hi]`, `key = [seed_lo, seed_hi]`.
//! A [`Philox`] value is one (seed, stream) pair; word `i` of its sequence
//! is word `i % 4` of block `i / 4`. Per-sample sequences start at block
//! `sample << 32`, so every sample owns 2³² blocks of its own.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// `(hi, lo)` of the 64-bit product `a · b`, using 32-bit arithmetic only
/// (16-bit halves), exactly as the WGSL twin does.
#[inline]
pub fn mulhilo32(a: u32, b: u32) -> (u32, u32) {
    let (a_lo, a_hi) = (a & 0xFFFF, a >> 16);
    let (b_lo, b_hi) = (b & 0xFFFF, b >> 16);
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    // Middle column with its carry into the high word.
    let mid = (ll >> 16) + (lh & 0xFFFF) + (hl & 0xFFFF);
    let lo = (ll & 0xFFFF) | (mid << 16);
    let hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
    (hi, lo)
}

/// One Philox4x32-10 block.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo32(M0, c[0]);
        let (hi1, lo1) = mulhilo32(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// A uniform float in [0, 1) from the top 24 bits: `(x >> 8) · 2⁻²⁴`.
#[inline]
pub fn unit_f32(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A uniform float in (0, 1]: `((x >> 8) + 1) · 2⁻²⁴` (safe under `ln`).
#[inline]
pub fn open_unit_f32(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// Two standard normals from two words (Box–Muller):
/// `r = sqrt(−2 ln u₁)`, `θ = 2π u₂`, `(r cos θ, r sin θ)` with
/// `u₁ = open_unit_f32(a)`, `u₂ = unit_f32(b)`.
#[inline]
pub fn box_muller(a: u32, b: u32) -> [f32; 2] {
    let r = libm::sqrtf(-2.0 * libm::logf(open_unit_f32(a)));
    let theta = 2.0 * core::f32::consts::PI * unit_f32(b);
    [r * libm::cosf(theta), r * libm::sinf(theta)]
}

/// What a stream is used for; the top byte of the 64-bit stream id, so
/// that two purposes never share counters for the same seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// Augmentation parameters (substream: step; per-sample blocks).
    Augment = 1,
    /// DSM Gaussian noise.
    DsmNoise = 2,
    /// DSM noise-level choice.
    DsmSigma = 3,
    /// The shuffled-weights control.
    Shuffle = 4,
    /// Parameter initialisation.
    Init = 5,
    /// Data order.
    DataOrder = 6,
    /// The `dsm` weight statistic's noise (substream: 16·step + level).
    StatNoise = 7,
}

/// `(purpose << 56) | (index mod 2⁵⁶)`: the stream id for a purpose at a
/// step (or a layer, for [`Purpose::Init`]).
#[inline]
pub fn stream_id(purpose: Purpose, index: u64) -> u64 {
    ((purpose as u64) << 56) | (index & ((1u64 << 56) - 1))
}

/// One Philox stream: a seed (the key) and a 64-bit stream id (the high
/// half of the counter). Random access by word index; no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Philox {
    /// `[seed_lo, seed_hi]`.
    pub key: [u32; 2],
    /// `[stream_lo, stream_hi]`.
    pub stream: [u32; 2],
}

impl Philox {
    /// The stream `stream` of generator `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        Philox {
            key: [seed as u32, (seed >> 32) as u32],
            stream: [stream as u32, (stream >> 32) as u32],
        }
    }

    /// Block `index` (four words).
    #[inline]
    pub fn block(&self, index: u64) -> [u32; 4] {
        philox4x32_10(
            [
                index as u32,
                (index >> 32) as u32,
                self.stream[0],
                self.stream[1],
            ],
            self.key,
        )
    }

    /// Word `i` of the sequence.
    #[inline]
    pub fn u32_at(&self, i: u64) -> u32 {
        self.block(i / 4)[(i % 4) as usize]
    }

    /// Uniform in [0, 1) from word `i`.
    #[inline]
    pub fn uniform_at(&self, i: u64) -> f32 {
        unit_f32(self.u32_at(i))
    }

    /// Standard normal number `i`: block `i / 4` gives four normals,
    /// Box–Muller on words (0, 1) and (2, 3), cos then sin.
    #[inline]
    pub fn normal_at(&self, i: u64) -> f32 {
        let b = self.block(i / 4);
        let j = (i % 4) as usize;
        box_muller(b[j & 2], b[(j & 2) + 1])[j & 1]
    }

    /// `out[k] = normal_at(start + k)` (indices wrapping at 2⁶⁴), each
    /// block and each Box–Muller pair computed once instead of once per
    /// number: the same values.
    pub fn fill_normal(&self, start: u64, out: &mut [f32]) {
        // Indices are below 2⁶⁴, so pair and block numbers never reach
        // u64::MAX, the "none yet" marker.
        let (mut block_no, mut block) = (u64::MAX, [0u32; 4]);
        let (mut pair_no, mut pair) = (u64::MAX, [0.0f32; 2]);
        for (k, o) in out.iter_mut().enumerate() {
            let i = start.wrapping_add(k as u64);
            if i / 2 != pair_no {
                if i / 4 != block_no {
                    block_no = i / 4;
                    block = self.block(block_no);
                }
                pair_no = i / 2;
                let j = (i % 4) as usize & 2;
                pair = box_muller(block[j], block[j + 1]);
            }
            *o = pair[(i & 1) as usize];
        }
    }

    /// `out[k] = uniform_at(start + k)`.
    pub fn fill_uniform(&self, start: u64, out: &mut [f32]) {
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.uniform_at(start + k as u64);
        }
    }

    /// An integer uniform in `0..n` from word `i` (`⌊x·n / 2³²⌋`; n ≥ 1).
    #[inline]
    pub fn below_at(&self, i: u64, n: u32) -> u32 {
        mulhilo32(self.u32_at(i), n).0
    }

    /// Shuffles `v` in place (Fisher–Yates, from the back), drawing word
    /// `start + t` for the t-th swap.
    pub fn shuffle<T>(&self, start: u64, v: &mut [T]) {
        let n = v.len();
        for (t, i) in (1..n).rev().enumerate() {
            let j = self.below_at(start + t as u64, (i + 1) as u32) as usize;
            v.swap(i, j);
        }
    }
}

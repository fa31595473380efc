//! The score network s(x, σ) = f(x, σ)/σ of ScoreCL: a two-resolution U-Net
//! of residual blocks conditioned on log σ by FiLM (a learned per-channel
//! scale and shift, `Linear(1 → 2C)` of log σ), on images in [0, 1] pixel
//! scale.
//!
//! ```text
//! h0 = conv_in(x)                    3 → C, 3×3
//! h1 = block1(h0)                    C
//! h2 = block2(down(h1))              down: 3×3 stride 2, C → 2C
//! m  = up(h2) + h1                   up: nearest ×2, then 3×3, 2C → C
//! f  = conv_out(relu(block3(m)))     C → 3, 3×3
//! block(x) = x + conv2(relu(film(conv1(relu(x)), log σ)))
//! ```
//!
//! Each `blockK` is a stage of `depth` residual blocks (`blockK.0`, …).
//!
//! Convolutions have no bias (FiLM provides the shifts); `conv_out` starts
//! at zero, so the initial score is 0. The height and width of the input
//! must be even.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::layers::{Conv2d, ConvInit, InitRng, Linear};
use crate::nn::params::ParamStore;
use crate::ops::conv::{ConvPrecision, ConvScratch};
use crate::ops::elementwise;
use crate::ops::unet as sops;
use crate::step::Step;
use crate::tensor::{DType, Tensor};

/// Size of the score network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreConfig {
    /// Channels at full resolution (2× at half resolution).
    pub width: usize,
    /// Residual blocks per stage (three stages: full, half, full
    /// resolution).
    pub depth: usize,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            width: 32,
            depth: 1,
        }
    }
}

struct Block {
    conv1: Conv2d,
    film: Linear,
    conv2: Conv2d,
    c: usize,
}

/// The score network and its parameters.
pub struct ScoreNet {
    /// Its size.
    pub cfg: ScoreConfig,
    /// Parameters (names: `conv_in.weight`, `block1.0.film.weight`, …).
    pub store: ParamStore,
    /// How its convolutions store their operands (taken by workspaces
    /// made after it is set; default f32).
    pub precision: ConvPrecision,
    conv_in: Conv2d,
    block1: Vec<Block>,
    down: Conv2d,
    block2: Vec<Block>,
    up: Conv2d,
    block3: Vec<Block>,
    conv_out: Conv2d,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    store: ParamStore,
    rng: InitRng,
}

impl Builder<'_> {
    /// A 3×3 convolution (padding 1), He normal with the fan-in or zero.
    fn conv(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        stride: usize,
        zero: bool,
    ) -> Result<Conv2d> {
        let init = if zero {
            ConvInit::Zeros
        } else {
            ConvInit::KaimingFanIn
        };
        let (g, s, rng) = (self.gpu, &mut self.store, self.rng);
        Conv2d::new(
            g,
            s,
            name,
            (cin, cout, 3),
            (stride, 1),
            init,
            rng,
            "scorecl.width",
        )
    }

    fn stage(&mut self, name: &str, c: usize, depth: usize) -> Result<Vec<Block>> {
        (0..depth)
            .map(|i| self.block(&format!("{name}.{i}"), c))
            .collect()
    }

    fn block(&mut self, name: &str, c: usize) -> Result<Block> {
        let conv1 = self.conv(&format!("{name}.conv1"), c, c, 1, false)?;
        // FiLM starts as the identity: zero weights and biases.
        let zeros = vec![0.0; 2 * c];
        let film = Linear::with_values(
            self.gpu,
            &mut self.store,
            &format!("{name}.film"),
            (1, 2 * c),
            &zeros,
            Some(&zeros),
        )?;
        let conv2 = self.conv(&format!("{name}.conv2"), c, c, 1, false)?;
        Ok(Block {
            conv1,
            film,
            conv2,
            c,
        })
    }
}

impl ScoreNet {
    /// A freshly initialised network (He-normal convolutions with fan-in,
    /// identity FiLM, zero output convolution).
    pub fn new(gpu: &Gpu, cfg: ScoreConfig, seed: u64) -> Result<ScoreNet> {
        if cfg.width == 0 || cfg.depth == 0 {
            return Err(Error::shape(
                "score network",
                format!(
                    "width {} and depth {}: both must be at least 1",
                    cfg.width, cfg.depth
                ),
            ));
        }
        let c = cfg.width;
        let mut b = Builder {
            gpu,
            store: ParamStore::default(),
            rng: InitRng { seed, domain: 2 },
        };
        Ok(ScoreNet {
            precision: ConvPrecision::F32,
            cfg,
            conv_in: b.conv("conv_in", 3, c, 1, false)?,
            block1: b.stage("block1", c, cfg.depth)?,
            down: b.conv("down", c, 2 * c, 2, false)?,
            block2: b.stage("block2", 2 * c, cfg.depth)?,
            up: b.conv("up", 2 * c, c, 1, false)?,
            block3: b.stage("block3", c, cfg.depth)?,
            conv_out: b.conv("conv_out", c, 3, 1, true)?,
            store: b.store,
        })
    }

    /// Multiply-adds of one forward pass on an h × w image.
    pub fn macs_per_image(&self, h: usize, w: usize) -> usize {
        let (c, d) = (self.cfg.width, self.cfg.depth);
        let full = h * w * 9;
        let half = (h / 2) * (w / 2) * 9;
        // conv_in, stages 1 and 3, up, conv_out at full resolution; down
        // and stage 2 at half.
        full * (3 * c + 4 * d * c * c + 2 * c * c + 3 * c) + half * (2 * c * c + 8 * d * c * c)
    }

    /// Buffers for batches of n images of h × w (both even).
    pub fn workspace(&self, gpu: &Gpu, n: usize, h: usize, w: usize) -> Result<ScoreWorkspace> {
        self.workspace_for(gpu, n, h, w, true)
    }

    /// A workspace for [`ScoreNet::forward`] only (the pair weights, the
    /// probe): the gradient buffers are left out, about half the memory;
    /// [`ScoreNet::backward`] refuses it.
    pub fn forward_workspace(
        &self,
        gpu: &Gpu,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<ScoreWorkspace> {
        self.workspace_for(gpu, n, h, w, false)
    }

    fn workspace_for(
        &self,
        gpu: &Gpu,
        n: usize,
        h: usize,
        w: usize,
        grads: bool,
    ) -> Result<ScoreWorkspace> {
        if h % 2 != 0 || w % 2 != 0 || h < 2 || w < 2 {
            return Err(Error::shape(
                "score network input",
                format!("{h}×{w}: height and width must be even"),
            ));
        }
        let (c, depth) = (self.cfg.width, self.cfg.depth);
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        // Gradient buffers: one element each in a forward-only workspace.
        let g = |len: usize| gpu.tensor(&[if grads { len } else { 1 }], DType::F32);
        let v = |arena: &Tensor, len: usize| arena.view(DType::F32, len);
        let full = n * c * h * w;
        let half = n * 2 * c * (h / 2) * (w / 2);
        // Buffers that no later pass reads share memory (see
        // `ScoreWorkspace::_arena`): `tmp` holds each block's FiLM output and
        // second convolution (the backward pass reads neither), the up
        // convolution's output, and in the backward the gradients that the
        // next operation consumes at once; `g1`, `g2` the blocks' inner
        // gradients (one block's backward ends before the next begins),
        // `g1` also the up-sampling's gradient (2·full). Forward-only, `p`
        // and `q` hold every activation a later operation of the same
        // pass does not read again.
        let tmp = t(full)?;
        let (g1, g2) = (g(2 * full)?, g(full)?);
        let (p, q) = if grads {
            (t(1)?, t(1)?)
        } else {
            (t(2 * full)?, t(full)?)
        };
        let bw = |len: usize, c: usize| -> Result<BlockWs> {
            // Forward-only: relu(x) and relu(FiLM) in `p` (the first is
            // read only by conv1), conv1's output in `q`.
            let own_or = |arena: &Tensor| if grads { t(len) } else { v(arena, len) };
            let gv = |arena: &Tensor| if grads { v(arena, len) } else { g(len) };
            Ok(BlockWs {
                r0: own_or(&p)?,
                a: own_or(&q)?,
                gb: t(n * 2 * c)?,
                b: v(&tmp, len)?,
                c_: own_or(&p)?,
                y: t(len)?,
                e: v(&tmp, len)?,
                dc: gv(&g1)?,
                db: gv(&g2)?,
                da: gv(&g1)?,
                dgb: g(n * 2 * c)?,
                dr0: gv(&g2)?,
                dr0b: gv(&g1)?,
                dx: g(len)?,
            })
        };
        let gview = |arena: &Tensor, len: usize| if grads { v(arena, len) } else { g(len) };
        let shapes = [
            self.conv_in.shape(n, h, w),
            self.block1[0].conv1.shape(n, h, w),
            self.down.shape(n, h, w),
            self.block2[0].conv1.shape(n, h / 2, w / 2),
            self.up.shape(n, h, w),
            self.conv_out.shape(n, h, w),
        ];
        let h0 = t(full)?;
        Ok(ScoreWorkspace {
            n,
            h,
            w,
            grads,
            scratch: ConvScratch::for_shapes(gpu, &shapes, self.precision)?,
            b1: (0..depth).map(|_| bw(full, c)).collect::<Result<_>>()?,
            d: t(half)?,
            b2: (0..depth).map(|_| bw(half, 2 * c)).collect::<Result<_>>()?,
            // Read by the up convolution's backward; forward-only, `p`.
            u0: if grads {
                t(4 * half)?
            } else {
                v(&p, 4 * half)?
            },
            u: v(&tmp, full)?,
            // Stage 1 has read h0 when the sum m is written.
            m: v(&h0, full)?,
            h0,
            b3: (0..depth).map(|_| bw(full, c)).collect::<Result<_>>()?,
            r3: if grads { t(full)? } else { v(&p, full)? },
            f: t(n * 3 * h * w)?,
            score: t(n * 3 * h * w)?,
            df: g(n * 3 * h * w)?,
            dr3: gview(&g1, full)?,
            dh3: gview(&tmp, full)?,
            du0: gview(&g1, 4 * half)?,
            dh2: gview(&tmp, half)?,
            dh1: gview(&tmp, full)?,
            dh1_down: gview(&g1, full)?,
            _arena: [tmp, g1, g2, p, q],
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        step: &mut Step,
        b: &Block,
        ws: &BlockWs,
        x: &Tensor,
        n: usize,
        h: usize,
        w: usize,
        logsig: &Tensor,
        scratch: &ConvScratch,
    ) -> Result<()> {
        let s = &self.store;
        let nhw = (n, h, w);
        elementwise::relu(step, x, &ws.r0)?;
        b.conv1.forward(step, s, &ws.r0, nhw, scratch, &ws.a)?;
        b.film.forward(step, s, logsig, n, &ws.gb)?;
        sops::film(step, &ws.a, &ws.gb, [n, b.c, h, w], &ws.b)?;
        elementwise::relu(step, &ws.b, &ws.c_)?;
        b.conv2.forward(step, s, &ws.c_, nhw, scratch, &ws.e)?;
        elementwise::add(step, x, &ws.e, &ws.y)
    }

    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        step: &mut Step,
        b: &Block,
        ws: &BlockWs,
        dy: &Tensor,
        n: usize,
        h: usize,
        w: usize,
        logsig: &Tensor,
        scratch: &ConvScratch,
    ) -> Result<()> {
        let s = &self.store;
        let nhw = (n, h, w);
        b.conv2
            .backward(step, s, &ws.c_, dy, nhw, scratch, Some(&ws.dc))?;
        elementwise::relu_backward(step, &ws.c_, &ws.dc, &ws.db)?;
        sops::film_backward(step, &ws.a, &ws.gb, &ws.db, [n, b.c, h, w], &ws.da, &ws.dgb)?;
        b.film.backward(step, s, logsig, &ws.dgb, n, None)?;
        b.conv1
            .backward(step, s, &ws.r0, &ws.da, nhw, scratch, Some(&ws.dr0))?;
        elementwise::relu_backward(step, &ws.r0, &ws.dr0, &ws.dr0b)?;
        elementwise::add(step, dy, &ws.dr0b, &ws.dx)
    }

    /// The blocks of a stage in order; returns the stage's output.
    #[allow(clippy::too_many_arguments)]
    fn stage_forward<'w>(
        &self,
        step: &mut Step,
        blocks: &[Block],
        wss: &'w [BlockWs],
        x: &'w Tensor,
        n: usize,
        h: usize,
        w: usize,
        logsig: &Tensor,
        scratch: &ConvScratch,
    ) -> Result<&'w Tensor> {
        let mut cur = x;
        for (b, ws) in blocks.iter().zip(wss) {
            self.block_forward(step, b, ws, cur, n, h, w, logsig, scratch)?;
            cur = &ws.y;
        }
        Ok(cur)
    }

    /// The blocks of a stage in reverse; returns the stage's input gradient.
    #[allow(clippy::too_many_arguments)]
    fn stage_backward<'w>(
        &self,
        step: &mut Step,
        blocks: &[Block],
        wss: &'w [BlockWs],
        dy: &'w Tensor,
        n: usize,
        h: usize,
        w: usize,
        logsig: &Tensor,
        scratch: &ConvScratch,
    ) -> Result<&'w Tensor> {
        let mut cur = dy;
        for (b, ws) in blocks.iter().zip(wss).rev() {
            self.block_backward(step, b, ws, cur, n, h, w, logsig, scratch)?;
            cur = &ws.dx;
        }
        Ok(cur)
    }

    /// Records `ws.score = f(x, σ)/σ` for images `x` ([n, 3, h, w]) with
    /// per-sample noise levels `sigma` (n) and their logarithms `logsig` (n).
    pub fn forward(
        &self,
        step: &mut Step,
        ws: &ScoreWorkspace,
        x: &Tensor,
        sigma: &Tensor,
        logsig: &Tensor,
    ) -> Result<()> {
        let (n, h, w, c) = (ws.n, ws.h, ws.w, self.cfg.width);
        x.expect_len("score network input", n * 3 * h * w)?;
        sigma.expect_len("score network sigma", n)?;
        logsig.expect_len("score network log sigma", n)?;
        let s = &self.store;
        let sc = &ws.scratch;
        self.conv_in.forward(step, s, x, (n, h, w), sc, &ws.h0)?;
        let y1 = self.stage_forward(step, &self.block1, &ws.b1, &ws.h0, n, h, w, logsig, sc)?;
        self.down.forward(step, s, y1, (n, h, w), sc, &ws.d)?;
        let y2 = self.stage_forward(
            step,
            &self.block2,
            &ws.b2,
            &ws.d,
            n,
            h / 2,
            w / 2,
            logsig,
            sc,
        )?;
        sops::up2(step, y2, [n, 2 * c, h / 2, w / 2], &ws.u0)?;
        self.up.forward(step, s, &ws.u0, (n, h, w), sc, &ws.u)?;
        elementwise::add(step, &ws.u, y1, &ws.m)?;
        let y3 = self.stage_forward(step, &self.block3, &ws.b3, &ws.m, n, h, w, logsig, sc)?;
        elementwise::relu(step, y3, &ws.r3)?;
        self.conv_out
            .forward(step, s, &ws.r3, (n, h, w), sc, &ws.f)?;
        elementwise::div_blocks(step, 1.0, &ws.f, sigma, 3 * h * w, &ws.score)
    }

    /// Records the backward for `dscore` after [`ScoreNet::forward`] of `x`
    /// with the same `sigma` and `logsig`; parameter gradients accumulate.
    pub fn backward(
        &self,
        step: &mut Step,
        ws: &ScoreWorkspace,
        x: &Tensor,
        sigma: &Tensor,
        logsig: &Tensor,
        dscore: &Tensor,
    ) -> Result<()> {
        let (n, h, w, c) = (ws.n, ws.h, ws.w, self.cfg.width);
        if !ws.grads {
            return Err(Error::shape(
                "score network backward",
                "the workspace was built for the forward pass only (forward_workspace)".to_string(),
            ));
        }
        dscore.expect_len("score gradient", n * 3 * h * w)?;
        let s = &self.store;
        let sc = &ws.scratch;
        elementwise::div_blocks(step, 1.0, dscore, sigma, 3 * h * w, &ws.df)?;
        self.conv_out
            .backward(step, s, &ws.r3, &ws.df, (n, h, w), sc, Some(&ws.dr3))?;
        elementwise::relu_backward(step, &ws.r3, &ws.dr3, &ws.dh3)?;
        // m = u + y1: both receive dm, stage 3's input gradient.
        let dm = self.stage_backward(step, &self.block3, &ws.b3, &ws.dh3, n, h, w, logsig, sc)?;
        self.up
            .backward(step, s, &ws.u0, dm, (n, h, w), sc, Some(&ws.du0))?;
        sops::up2_backward(step, &ws.du0, [n, 2 * c, h / 2, w / 2], &ws.dh2)?;
        let dd = self.stage_backward(
            step,
            &self.block2,
            &ws.b2,
            &ws.dh2,
            n,
            h / 2,
            w / 2,
            logsig,
            sc,
        )?;
        let y1 = &ws.b1.last().expect("depth ≥ 1").y;
        self.down
            .backward(step, s, y1, dd, (n, h, w), sc, Some(&ws.dh1_down))?;
        elementwise::add(step, &ws.dh1_down, dm, &ws.dh1)?;
        let dh0 = self.stage_backward(step, &self.block1, &ws.b1, &ws.dh1, n, h, w, logsig, sc)?;
        self.conv_in.backward(step, s, x, dh0, (n, h, w), sc, None)
    }
}

struct BlockWs {
    r0: Tensor,
    a: Tensor,
    gb: Tensor,
    b: Tensor,
    c_: Tensor,
    y: Tensor,
    e: Tensor,
    dc: Tensor,
    db: Tensor,
    da: Tensor,
    dgb: Tensor,
    dr0: Tensor,
    dr0b: Tensor,
    dx: Tensor,
}

/// Activations and gradients of one batch shape.
pub struct ScoreWorkspace {
    /// Batch size.
    pub n: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Whether it holds the gradient buffers (not [`ScoreNet::forward_workspace`]).
    grads: bool,
    scratch: ConvScratch,
    h0: Tensor,
    b1: Vec<BlockWs>,
    d: Tensor,
    b2: Vec<BlockWs>,
    u0: Tensor,
    u: Tensor,
    m: Tensor,
    b3: Vec<BlockWs>,
    r3: Tensor,
    f: Tensor,
    /// The score of the last forward ([n, 3, h, w]).
    pub score: Tensor,
    df: Tensor,
    dr3: Tensor,
    dh3: Tensor,
    du0: Tensor,
    dh2: Tensor,
    dh1: Tensor,
    dh1_down: Tensor,
    /// The shared buffers the fields above are views of where no later
    /// operation reads them (`tmp`, `g1`, `g2`, and forward-only `p`,
    /// `q`): about half the memory of one buffer per tensor (21 against
    /// 43 full-resolution activations with gradients, 8 against 21.5
    /// forward-only, at depth 1). Declared last: dropped after its views.
    _arena: [Tensor; 5],
}

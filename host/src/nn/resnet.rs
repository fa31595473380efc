//! ResNet-18 (basic blocks) and ResNet-50 (bottleneck blocks) without
//! their classifier: the encoder of every method.
//!
//! Parameter names, shapes and layouts are those of torchvision's `resnet18`
//! / `resnet50` state dicts (`conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`,
//! `layer2.0.downsample.0.weight`, …), so checkpoints move both ways between
//! scorecl and PyTorch. Widths are `width · (1, 2, 4, 8)` (64 gives the
//! standard network, 512-d features); the CIFAR stem is a 3×3 stride-1
//! convolution without max-pool, the ImageNet stem a 7×7 stride-2
//! convolution and a 3×3 stride-2 max-pool. Initialisation follows
//! torchvision: convolutions He-normal with fan-out, batch norms γ = 1,
//! β = 0.
//!
//! All activations are NCHW. The forward keeps, per block, the convolution
//! outputs and the activations its backward needs; the backward accumulates
//! into the parameters' gradients (zero them first with
//! [`ParamStore::zero_grads`]).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::encoder::{Encoder, EncoderWorkspace};
use crate::nn::layers::{BatchNorm, BnSaved, Conv2d, ConvInit, InitRng};
use crate::nn::params::ParamStore;
use crate::ops::conv::{ConvPrecision, ConvScratch, ConvShape, DxAdd};
use crate::ops::pool;
use crate::step::Step;
use crate::tensor::{DType, Tensor};

/// The first layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stem {
    /// 3×3 convolution, stride 1, no max-pool (32×32 images). `padding` 1
    /// is the usual choice (lightly, most papers); solo-learn uses 2.
    Cifar {
        /// Zero padding of the first convolution.
        padding: usize,
    },
    /// 7×7 convolution, stride 2, padding 3, then 3×3 max-pool, stride 2.
    ImageNet,
}

/// The residual block a ResNet stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convolutions (ResNet-18/34).
    Basic,
    /// 1×1, 3×3 (with the stride, torchvision's v1.5), 1×1 to 4× the
    /// width (ResNet-50/101/152).
    Bottleneck,
}

impl BlockKind {
    /// Output channels per unit of stage width: 1 or 4.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Shape of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Base width (64 for the standard ResNet-18).
    pub width: usize,
    /// The stem.
    pub stem: Stem,
    /// Blocks per stage ([2, 2, 2, 2] for ResNet-18, [3, 4, 6, 3] for
    /// ResNet-50).
    pub blocks: [usize; 4],
    /// The kind of block.
    pub block: BlockKind,
}

impl ResNetConfig {
    /// ResNet-18 at `width` with `stem`.
    pub fn resnet18(width: usize, stem: Stem) -> Self {
        ResNetConfig {
            width,
            stem,
            blocks: [2, 2, 2, 2],
            block: BlockKind::Basic,
        }
    }

    /// ResNet-50 at `width` with `stem` (bottleneck blocks, 32·width-d
    /// features: 2048 at width 64).
    pub fn resnet50(width: usize, stem: Stem) -> Self {
        ResNetConfig {
            width,
            stem,
            blocks: [3, 4, 6, 3],
            block: BlockKind::Bottleneck,
        }
    }

    /// The inner width of stage `stage` (0–3): the width doubled per
    /// stage (a block's output is this times the expansion).
    pub fn stage_width(&self, stage: usize) -> usize {
        self.width << stage
    }

    /// Dimension of the pooled features: the last stage's output channels
    /// (8·width for basic blocks, 32·width for bottlenecks).
    pub fn feature_dim(&self) -> usize {
        self.stage_width(self.blocks.len() - 1) * self.block.expansion()
    }
}

/// A basic block: conv 3×3 (stride) – bn – relu – conv 3×3 – bn, plus the
/// shortcut, relu.
struct Basic {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    down: Option<(Conv2d, BatchNorm)>,
}

/// A bottleneck block: conv 1×1 – bn – relu – conv 3×3 (stride) – bn –
/// relu – conv 1×1 (4× the width) – bn, plus the shortcut, relu.
struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    down: Option<(Conv2d, BatchNorm)>,
}

enum Block {
    Basic(Basic),
    Bottleneck(Bottleneck),
}

/// The encoder: its parameters and structure.
pub struct ResNet {
    /// Its shape.
    pub cfg: ResNetConfig,
    /// Parameters, running statistics, counters (torchvision names).
    pub store: ParamStore,
    /// How its convolutions store their operands (taken by workspaces
    /// made after it is set; default f32).
    pub precision: ConvPrecision,
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    /// The parameters (indices into `store`) of the stem, then of each block.
    stem_params: std::ops::Range<usize>,
    block_params: Vec<std::ops::Range<usize>>,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    store: ParamStore,
    rng: InitRng,
}

impl Builder<'_> {
    /// A convolution initialised as torchvision's (He normal, fan-out).
    fn conv(
        &mut self,
        name: &str,
        (cin, cout, k): (usize, usize, usize),
        stride: usize,
        pad: usize,
    ) -> Result<Conv2d> {
        let init = ConvInit::KaimingFanOut;
        let (g, s, rng) = (self.gpu, &mut self.store, self.rng);
        Conv2d::new(
            g,
            s,
            name,
            (cin, cout, k),
            (stride, pad),
            init,
            rng,
            "model.width",
        )
    }

    /// The 1×1 projection shortcut torchvision adds where the stride or
    /// the width changes.
    fn downsample(
        &mut self,
        p: &str,
        inplanes: usize,
        outplanes: usize,
        stride: usize,
    ) -> Result<Option<(Conv2d, BatchNorm)>> {
        if stride == 1 && inplanes == outplanes {
            return Ok(None);
        }
        let c = self.conv(
            &format!("{p}.downsample.0"),
            (inplanes, outplanes, 1),
            stride,
            0,
        )?;
        Ok(Some((c, self.bn(&format!("{p}.downsample.1"), outplanes)?)))
    }

    fn bn(&mut self, name: &str, c: usize) -> Result<BatchNorm> {
        BatchNorm::new(self.gpu, &mut self.store, name, c, true)
    }
}

impl ResNet {
    /// A workspace for n images of h × w; with `share`, its gradient
    /// buffers are views of `share`'s (see
    /// [`Encoder::workspace_sharing_gradients`]).
    fn make_workspace(
        &self,
        gpu: &Gpu,
        n: usize,
        h: usize,
        w: usize,
        input_grad: bool,
        share: Option<&ResNetWorkspace>,
    ) -> Result<EncoderWorkspace> {
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        // A gradient buffer: `share`'s, or a new one.
        let g = |len: usize, other: Option<&Tensor>| match other {
            Some(o) => o.view(DType::F32, len),
            None => t(len),
        };
        let bnw = |bn: &BatchNorm| bn.saved(gpu);
        let s0 = self.conv1.shape(n, h, w);
        let stem_len = s0.out_len();
        let pool = match self.cfg.stem {
            Stem::ImageNet => {
                let p = pool_shape(n, self.cfg.width, s0.oh(), s0.ow());
                let dpool = share.and_then(|o| o.pool.as_ref()).map(|(_, _, d)| d);
                Some((
                    t(p.out_len())?,
                    ParamStore::indices(gpu, p.out_len())?,
                    g(stem_len, dpool)?,
                ))
            }
            Stem::Cifar { .. } => None,
        };
        let (mut hh, mut ww) = self.stem_out(h, w);
        let mut blocks = Vec::new();
        let downw = |down: &Option<(Conv2d, BatchNorm)>,
                     out_len: usize,
                     in_len: usize,
                     other: Option<&DownWs>| {
            down.as_ref()
                .map(|(_, bn)| {
                    Ok::<_, crate::Error>(DownWs {
                        ad: t(out_len)?,
                        bd: t(out_len)?,
                        dx1: g(in_len, other.map(|o| &o.dx1))?,
                        dad: g(out_len, other.map(|o| &o.dad))?,
                        bn: bnw(bn)?,
                    })
                })
                .transpose()
        };
        for (i, b) in self.blocks.iter().enumerate() {
            let other = share.map(|o| &o.blocks[i]);
            match b {
                Block::Basic(b) => {
                    let o = match other {
                        Some(BlockWs::Basic(o)) => Some(&**o),
                        Some(_) => return Err(mismatched()),
                        None => None,
                    };
                    let s1 = b.conv1.shape(n, hh, ww);
                    let (out_len, in_len) = (s1.out_len(), s1.in_len());
                    blocks.push(BlockWs::Basic(Box::new(BasicWs {
                        h: hh,
                        w: ww,
                        a1: t(out_len)?,
                        r1: t(out_len)?,
                        a2: t(out_len)?,
                        out: t(out_len)?,
                        da2: g(out_len, o.map(|o| &o.da2))?,
                        dr1: g(out_len, o.map(|o| &o.dr1))?,
                        da1: g(out_len, o.map(|o| &o.da1))?,
                        dx: g(in_len, o.map(|o| &o.dx))?,
                        bn1: bnw(&b.bn1)?,
                        bn2: bnw(&b.bn2)?,
                        down: downw(&b.down, out_len, in_len, o.and_then(|o| o.down.as_ref()))?,
                    })));
                    (hh, ww) = (s1.oh(), s1.ow());
                }
                Block::Bottleneck(b) => {
                    let o = match other {
                        Some(BlockWs::Bottleneck(o)) => Some(&**o),
                        Some(_) => return Err(mismatched()),
                        None => None,
                    };
                    let s1 = b.conv1.shape(n, hh, ww);
                    let s2 = b.conv2.shape(n, s1.oh(), s1.ow());
                    let s3 = b.conv3.shape(n, s2.oh(), s2.ow());
                    let (l1, l2, l3, in_len) =
                        (s1.out_len(), s2.out_len(), s3.out_len(), s1.in_len());
                    blocks.push(BlockWs::Bottleneck(Box::new(BottleneckWs {
                        h: hh,
                        w: ww,
                        a1: t(l1)?,
                        r1: t(l1)?,
                        a2: t(l2)?,
                        r2: t(l2)?,
                        a3: t(l3)?,
                        out: t(l3)?,
                        da3: g(l3, o.map(|o| &o.da3))?,
                        dr2: g(l2, o.map(|o| &o.dr2))?,
                        da2: g(l2, o.map(|o| &o.da2))?,
                        dr1: g(l1, o.map(|o| &o.dr1))?,
                        da1: g(l1, o.map(|o| &o.da1))?,
                        dx: g(in_len, o.map(|o| &o.dx))?,
                        bn1: bnw(&b.bn1)?,
                        bn2: bnw(&b.bn2)?,
                        bn3: bnw(&b.bn3)?,
                        down: downw(&b.down, l3, in_len, o.and_then(|o| o.down.as_ref()))?,
                    })));
                    (hh, ww) = (s2.oh(), s2.ow());
                }
            }
        }
        let last = blocks
            .last()
            .map_or(stem_len / n, |_| self.feature_dim() * hh * ww);
        let scratch = ConvScratch::for_shapes(gpu, &self.conv_shapes(n, h, w), self.precision)?;
        let precision = scratch.precision();
        let own = ResNetWorkspace {
            scratch,
            a0: t(stem_len)?,
            r0: t(stem_len)?,
            bn0: bnw(&self.bn1)?,
            pool,
            blocks,
            last_hw: hh * ww,
            dlast: g(n * last, share.map(|o| &o.dlast))?,
            da0: g(stem_len, share.map(|o| &o.da0))?,
        };
        let features = gpu.tensor(&[n, self.feature_dim()], DType::F32)?;
        let dinput = input_grad.then(|| t(n * 3 * h * w)).transpose()?;
        Ok(EncoderWorkspace::new(
            (n, h, w),
            features,
            dinput,
            precision,
            own,
        ))
    }

    /// A freshly initialised network; `seed` fixes the initial weights.
    pub fn new(gpu: &Gpu, cfg: ResNetConfig, seed: u64) -> Result<ResNet> {
        if cfg.width == 0 {
            return Err(Error::shape("resnet width", "must be at least 1"));
        }
        let mut b = Builder {
            gpu,
            store: ParamStore::default(),
            rng: InitRng { seed, domain: 0 },
        };
        let w = cfg.width;
        let conv1 = match cfg.stem {
            Stem::Cifar { padding } => b.conv("conv1", (3, w, 3), 1, padding)?,
            Stem::ImageNet => b.conv("conv1", (3, w, 7), 2, 3)?,
        };
        let bn1 = b.bn("bn1", w)?;
        let stem_params = 0..b.store.params.len();
        let mut block_params = Vec::new();
        let mut blocks = Vec::new();
        let mut inplanes = w;
        for (stage, &count) in cfg.blocks.iter().enumerate() {
            let planes = cfg.stage_width(stage);
            let outplanes = planes * cfg.block.expansion();
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let p = format!("layer{}.{i}", stage + 1);
                let first = b.store.params.len();
                // torchvision's order: the block's layers, then the
                // downsample.
                let block = match cfg.block {
                    BlockKind::Basic => {
                        let conv1 =
                            b.conv(&format!("{p}.conv1"), (inplanes, planes, 3), stride, 1)?;
                        let bn1 = b.bn(&format!("{p}.bn1"), planes)?;
                        let conv2 = b.conv(&format!("{p}.conv2"), (planes, planes, 3), 1, 1)?;
                        let bn2 = b.bn(&format!("{p}.bn2"), planes)?;
                        let down = b.downsample(&p, inplanes, outplanes, stride)?;
                        Block::Basic(Basic {
                            conv1,
                            bn1,
                            conv2,
                            bn2,
                            down,
                        })
                    }
                    BlockKind::Bottleneck => {
                        let conv1 = b.conv(&format!("{p}.conv1"), (inplanes, planes, 1), 1, 0)?;
                        let bn1 = b.bn(&format!("{p}.bn1"), planes)?;
                        let conv2 =
                            b.conv(&format!("{p}.conv2"), (planes, planes, 3), stride, 1)?;
                        let bn2 = b.bn(&format!("{p}.bn2"), planes)?;
                        let conv3 = b.conv(&format!("{p}.conv3"), (planes, outplanes, 1), 1, 0)?;
                        let bn3 = b.bn(&format!("{p}.bn3"), outplanes)?;
                        let down = b.downsample(&p, inplanes, outplanes, stride)?;
                        Block::Bottleneck(Bottleneck {
                            conv1,
                            bn1,
                            conv2,
                            bn2,
                            conv3,
                            bn3,
                            down,
                        })
                    }
                };
                blocks.push(block);
                block_params.push(first..b.store.params.len());
                inplanes = outplanes;
            }
        }
        Ok(ResNet {
            precision: ConvPrecision::F32,
            cfg,
            store: b.store,
            conv1,
            bn1,
            blocks,
            stem_params,
            block_params,
        })
    }

    /// Spatial size after the stem for an h × w input.
    fn stem_out(&self, h: usize, w: usize) -> (usize, usize) {
        let s = self.conv1.shape(1, h, w);
        match self.cfg.stem {
            Stem::Cifar { .. } => (s.oh(), s.ow()),
            Stem::ImageNet => {
                let p = pool_shape(1, self.cfg.width, s.oh(), s.ow());
                (p.oh(), p.ow())
            }
        }
    }

    /// Every convolution's shape for a batch of n images of h × w, in order.
    pub fn conv_shapes(&self, n: usize, h: usize, w: usize) -> Vec<ConvShape> {
        let mut v = vec![self.conv1.shape(n, h, w)];
        let (mut hh, mut ww) = self.stem_out(h, w);
        for b in &self.blocks {
            let (down, out) = match b {
                Block::Basic(b) => {
                    let s1 = b.conv1.shape(n, hh, ww);
                    v.push(s1);
                    v.push(b.conv2.shape(n, s1.oh(), s1.ow()));
                    (&b.down, (s1.oh(), s1.ow()))
                }
                Block::Bottleneck(b) => {
                    let s1 = b.conv1.shape(n, hh, ww);
                    let s2 = b.conv2.shape(n, s1.oh(), s1.ow());
                    v.extend([s1, s2, b.conv3.shape(n, s2.oh(), s2.ow())]);
                    (&b.down, (s2.oh(), s2.ow()))
                }
            };
            if let Some((d, _)) = down {
                v.push(d.shape(n, hh, ww));
            }
            (hh, ww) = out;
        }
        v
    }
}

impl Encoder for ResNet {
    fn store(&self) -> &ParamStore {
        &self.store
    }

    fn feature_dim(&self) -> usize {
        self.cfg.feature_dim()
    }

    fn macs_per_image(&self, h: usize, w: usize) -> usize {
        self.conv_shapes(1, h, w).iter().map(|s| s.macs()).sum()
    }

    fn set_precision(&mut self, precision: ConvPrecision) {
        self.precision = precision;
    }

    fn workspace(
        &self,
        gpu: &Gpu,
        n: usize,
        h: usize,
        w: usize,
        input_grad: bool,
    ) -> Result<EncoderWorkspace> {
        self.make_workspace(gpu, n, h, w, input_grad, None)
    }

    fn workspace_sharing_gradients(
        &self,
        gpu: &Gpu,
        with: &EncoderWorkspace,
    ) -> Result<EncoderWorkspace> {
        let other = with.model::<ResNetWorkspace>()?;
        let (n, h, w) = (with.n, with.h, with.w);
        self.make_workspace(gpu, n, h, w, with.dinput.is_some(), Some(other))
    }

    fn forward(
        &self,
        step: &mut Step,
        ws: &EncoderWorkspace,
        x: &Tensor,
        training: bool,
    ) -> Result<()> {
        let r = ws.model::<ResNetWorkspace>()?;
        let n = ws.n;
        x.expect_len("encoder input", n * 3 * ws.h * ws.w)?;
        let stem = (&self.conv1, &self.bn1, &r.bn0);
        let (nhw, a0r) = ((n, ws.h, ws.w), (&r.a0, &r.r0));
        let s0 = self.conv_bn_relu(step, stem, x, nhw, &r.scratch, a0r, training)?;
        let mut cur = &r.r0;
        if let Some((pooled, arg, _)) = &r.pool {
            pool::maxpool(
                step,
                &r.r0,
                &pool_shape(n, self.cfg.width, s0.oh(), s0.ow()),
                pooled,
                arg,
            )?;
            cur = pooled;
        }
        for (b, bw) in self.blocks.iter().zip(&r.blocks) {
            match (b, bw) {
                (Block::Basic(b), BlockWs::Basic(w)) => {
                    self.block_forward(step, b, w, n, cur, &r.scratch, training)?
                }
                (Block::Bottleneck(b), BlockWs::Bottleneck(w)) => {
                    self.bottleneck_forward(step, b, w, n, cur, &r.scratch, training)?
                }
                _ => return Err(mismatched()),
            }
            cur = bw.out();
        }
        pool::avgpool(step, cur, n, self.feature_dim(), r.last_hw, &ws.features)
    }

    fn backward(
        &self,
        step: &mut Step,
        ws: &EncoderWorkspace,
        x: &Tensor,
        dfeatures: &Tensor,
    ) -> Result<()> {
        self.backward_notify(step, ws, x, dfeatures, &mut |_, _| Ok(()))
    }

    fn backward_notify<'s>(
        &self,
        step: &mut Step<'s>,
        ws: &EncoderWorkspace,
        x: &Tensor,
        dfeatures: &Tensor,
        done: &mut dyn FnMut(&mut Step<'s>, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let r = ws.model::<ResNetWorkspace>()?;
        let n = ws.n;
        dfeatures.expect_len("feature gradient", n * self.feature_dim())?;
        pool::avgpool_backward(step, dfeatures, n, self.feature_dim(), r.last_hw, &r.dlast)?;
        let mut dcur = &r.dlast;
        for i in (0..self.blocks.len()).rev() {
            let input = if i == 0 {
                r.pool.as_ref().map_or(&r.r0, |(p, _, _)| p)
            } else {
                r.blocks[i - 1].out()
            };
            match (&self.blocks[i], &r.blocks[i]) {
                (Block::Basic(b), BlockWs::Basic(w)) => {
                    self.block_backward(step, b, w, n, input, dcur, &r.scratch)?
                }
                (Block::Bottleneck(b), BlockWs::Bottleneck(w)) => {
                    self.bottleneck_backward(step, b, w, n, input, dcur, &r.scratch)?
                }
                _ => return Err(mismatched()),
            }
            done(step, self.block_params[i].clone())?;
            dcur = r.blocks[i].dx();
        }
        let s0 = self.conv1.shape(n, ws.h, ws.w);
        if let Some((_, arg, dpool)) = &r.pool {
            pool::maxpool_backward(
                step,
                dcur,
                arg,
                &pool_shape(n, self.cfg.width, s0.oh(), s0.ow()),
                dpool,
            )?;
            dcur = dpool;
        }
        let stem = (&self.conv1, &self.bn1, &r.bn0);
        let (a0r, da0) = ((&r.a0, &r.r0), (&r.da0, ws.dinput.as_ref()));
        self.conv_bn_relu_backward(step, stem, x, s0.input(), &r.scratch, a0r, dcur, da0)?;
        done(step, self.stem_params.clone())
    }
}

impl ResNet {
    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        step: &mut Step,
        b: &Basic,
        w: &BasicWs,
        n: usize,
        x: &Tensor,
        scratch: &ConvScratch,
        training: bool,
    ) -> Result<()> {
        let unit1 = (&b.conv1, &b.bn1, &w.bn1);
        let s1 = self.conv_bn_relu(
            step,
            unit1,
            x,
            (n, w.h, w.w),
            scratch,
            (&w.a1, &w.r1),
            training,
        )?;
        let s2 = b.conv2.forward(
            step,
            &self.store,
            &w.r1,
            (n, s1.oh(), s1.ow()),
            scratch,
            &w.a2,
        )?;
        let shortcut = self.shortcut_forward(
            step,
            (&b.down, &w.down),
            x,
            n,
            (w.h, w.w),
            scratch,
            training,
        )?;
        // bn2, the shortcut and the ReLU in one pass.
        let nhw = (n, s2.oh() * s2.ow());
        b.bn2.forward_add_relu(
            step,
            &self.store,
            &w.bn2,
            &w.a2,
            nhw,
            training,
            shortcut,
            &w.out,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        step: &mut Step,
        b: &Basic,
        w: &BasicWs,
        n: usize,
        x: &Tensor,
        dout: &Tensor,
        scratch: &ConvScratch,
    ) -> Result<()> {
        let s1 = b.conv1.shape(n, w.h, w.w);
        let (nhw1, hw) = ((n, s1.oh(), s1.ow()), s1.oh() * s1.ow());
        // conv2 → bn2 → the block's output ReLU (fused with the shortcut's
        // add in the forward): the ReLU's backward is read inside bn2's,
        // the downsample's and the identity shortcut's add.
        let unit2 = (&b.conv2, &b.bn2, &w.bn2);
        let (a2r, da2) = ((&w.a2, &w.out), (&w.da2, Some(&w.dr1)));
        self.conv_bn_relu_backward(step, unit2, &w.r1, nhw1, scratch, a2r, dout, da2)?;
        let st = &self.store;
        b.bn1.backward(
            step,
            st,
            &w.bn1,
            &w.a1,
            &w.dr1,
            Some(&w.r1),
            (n, hw),
            &w.da1,
        )?;
        self.first_conv_and_shortcut_backward(
            step,
            (&b.conv1, &s1),
            (&b.down, &w.down),
            x,
            (&w.da1, &w.dx),
            (dout, &w.out),
            n,
            (w.h, w.w),
            scratch,
        )
    }
}

impl ResNet {
    /// A block's shortcut: the downsample (1×1 convolution and batch
    /// norm) of the block's input `x` (h × w), or `x` itself.
    #[allow(clippy::too_many_arguments)]
    fn shortcut_forward<'a>(
        &self,
        step: &mut Step,
        down: (&Option<(Conv2d, BatchNorm)>, &'a Option<DownWs>),
        x: &'a Tensor,
        n: usize,
        (h, w): (usize, usize),
        scratch: &ConvScratch,
        training: bool,
    ) -> Result<&'a Tensor> {
        match down {
            (Some((dc, dbn)), Some(d)) => {
                let s = dc.shape(n, h, w);
                dc.forward(step, &self.store, x, s.input(), scratch, &d.ad)?;
                let hw = s.oh() * s.ow();
                dbn.forward(
                    step,
                    &self.store,
                    &d.bn,
                    &d.ad,
                    (n, hw),
                    training,
                    false,
                    &d.bd,
                )?;
                Ok(&d.bd)
            }
            (None, None) => Ok(x),
            _ => Err(mismatched()),
        }
    }

    /// The backward of a block's first convolution (`conv1` of shape `s1`
    /// on the block's input `x`, h × w; output gradient `da1`) and of its
    /// shortcut, into the input gradient `dx`: with a downsample, conv1's
    /// input gradient plus the downsample's (its batch norm reads the
    /// block's output ReLU: `dout`, `out`); with the identity, conv1's
    /// input gradient plus relu'(out)·dout, fused.
    #[allow(clippy::too_many_arguments)]
    fn first_conv_and_shortcut_backward(
        &self,
        step: &mut Step,
        (conv1, s1): (&Conv2d, &ConvShape),
        down: (&Option<(Conv2d, BatchNorm)>, &Option<DownWs>),
        x: &Tensor,
        (da1, dx): (&Tensor, &Tensor),
        (dout, out): (&Tensor, &Tensor),
        n: usize,
        (h, w): (usize, usize),
        scratch: &ConvScratch,
    ) -> Result<()> {
        match down {
            (Some((dc, dbn)), Some(d)) => {
                conv1.backward(step, &self.store, x, da1, s1.input(), scratch, Some(&d.dx1))?;
                let s = dc.shape(n, h, w);
                let hw = s.oh() * s.ow();
                dbn.backward(
                    step,
                    &self.store,
                    &d.bn,
                    &d.ad,
                    dout,
                    Some(out),
                    (n, hw),
                    &d.dad,
                )?;
                // dx = dx1 + the downsample's input gradient (fused).
                dc.backward_add(
                    step,
                    &self.store,
                    x,
                    &d.dad,
                    s.input(),
                    scratch,
                    Some(dx),
                    DxAdd::Add(&d.dx1),
                )
            }
            // dx = conv1's input gradient + relu'(out)·dout (fused).
            (None, None) => conv1.backward_add(
                step,
                &self.store,
                x,
                da1,
                s1.input(),
                scratch,
                Some(dx),
                DxAdd::AddRelu { dy: dout, y: out },
            ),
            _ => Err(mismatched()),
        }
    }

    /// A bottleneck block's forward: as [`Self::block_forward`] with the
    /// third convolution, the stride on the 3×3 one.
    #[allow(clippy::too_many_arguments)]
    fn bottleneck_forward(
        &self,
        step: &mut Step,
        b: &Bottleneck,
        w: &BottleneckWs,
        n: usize,
        x: &Tensor,
        scratch: &ConvScratch,
        training: bool,
    ) -> Result<()> {
        let unit1 = (&b.conv1, &b.bn1, &w.bn1);
        let s1 = self.conv_bn_relu(
            step,
            unit1,
            x,
            (n, w.h, w.w),
            scratch,
            (&w.a1, &w.r1),
            training,
        )?;
        let unit2 = (&b.conv2, &b.bn2, &w.bn2);
        let nhw2 = (n, s1.oh(), s1.ow());
        let s2 = self.conv_bn_relu(step, unit2, &w.r1, nhw2, scratch, (&w.a2, &w.r2), training)?;
        let s3 = b.conv3.forward(
            step,
            &self.store,
            &w.r2,
            (n, s2.oh(), s2.ow()),
            scratch,
            &w.a3,
        )?;
        let shortcut = self.shortcut_forward(
            step,
            (&b.down, &w.down),
            x,
            n,
            (w.h, w.w),
            scratch,
            training,
        )?;
        // bn3, the shortcut and the ReLU in one pass.
        let nhw = (n, s3.oh() * s3.ow());
        b.bn3.forward_add_relu(
            step,
            &self.store,
            &w.bn3,
            &w.a3,
            nhw,
            training,
            shortcut,
            &w.out,
        )
    }

    /// A bottleneck block's backward (the shortcut's add fused as in
    /// [`Self::block_backward`]).
    #[allow(clippy::too_many_arguments)]
    fn bottleneck_backward(
        &self,
        step: &mut Step,
        b: &Bottleneck,
        w: &BottleneckWs,
        n: usize,
        x: &Tensor,
        dout: &Tensor,
        scratch: &ConvScratch,
    ) -> Result<()> {
        let s1 = b.conv1.shape(n, w.h, w.w);
        let s2 = b.conv2.shape(n, s1.oh(), s1.ow());
        let hw1 = s1.oh() * s1.ow();
        let unit3 = (&b.conv3, &b.bn3, &w.bn3);
        let (a3r, da3) = ((&w.a3, &w.out), (&w.da3, Some(&w.dr2)));
        let nhw3 = (n, s2.oh(), s2.ow());
        self.conv_bn_relu_backward(step, unit3, &w.r2, nhw3, scratch, a3r, dout, da3)?;
        let unit2 = (&b.conv2, &b.bn2, &w.bn2);
        let (a2r, da2) = ((&w.a2, &w.r2), (&w.da2, Some(&w.dr1)));
        let nhw2 = (n, s1.oh(), s1.ow());
        self.conv_bn_relu_backward(step, unit2, &w.r1, nhw2, scratch, a2r, &w.dr2, da2)?;
        let st = &self.store;
        b.bn1.backward(
            step,
            st,
            &w.bn1,
            &w.a1,
            &w.dr1,
            Some(&w.r1),
            (n, hw1),
            &w.da1,
        )?;
        self.first_conv_and_shortcut_backward(
            step,
            (&b.conv1, &s1),
            (&b.down, &w.down),
            x,
            (&w.da1, &w.dx),
            (dout, &w.out),
            n,
            (w.h, w.w),
            scratch,
        )
    }

    /// conv → batch norm → ReLU (fused into the batch norm), the unit the
    /// blocks repeat: `a` the convolution's output, `r` the ReLU's.
    /// Returns the convolution's shape.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn_relu(
        &self,
        step: &mut Step,
        (conv, bn, saved): (&Conv2d, &BatchNorm, &BnSaved),
        x: &Tensor,
        nhw: (usize, usize, usize),
        scratch: &ConvScratch,
        (a, r): (&Tensor, &Tensor),
        training: bool,
    ) -> Result<ConvShape> {
        let s = conv.forward(step, &self.store, x, nhw, scratch, a)?;
        let hw = (s.n, s.oh() * s.ow());
        bn.forward(step, &self.store, saved, a, hw, training, true, r)?;
        Ok(s)
    }

    /// The backward of [`Self::conv_bn_relu`] on input `x` from the
    /// gradient `dr` at the ReLU's output `r`: the ReLU's and the batch
    /// norm's in one pass into `da`, then the convolution's into `dx`.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn_relu_backward(
        &self,
        step: &mut Step,
        (conv, bn, saved): (&Conv2d, &BatchNorm, &BnSaved),
        x: &Tensor,
        nhw: (usize, usize, usize),
        scratch: &ConvScratch,
        (a, r): (&Tensor, &Tensor),
        dr: &Tensor,
        (da, dx): (&Tensor, Option<&Tensor>),
    ) -> Result<()> {
        let s = conv.shape(nhw.0, nhw.1, nhw.2);
        let hw = (s.n, s.oh() * s.ow());
        bn.backward(step, &self.store, saved, a, dr, Some(r), hw, da)?;
        conv.backward(step, &self.store, x, da, nhw, scratch, dx)
    }
}

fn pool_shape(n: usize, c: usize, h: usize, w: usize) -> ConvShape {
    ConvShape {
        n,
        cin: c,
        h,
        w,
        cout: c,
        k: 3,
        stride: 2,
        pad: 1,
    }
}

/// A basic block's activations and gradients (input h × w).
struct BasicWs {
    h: usize,
    w: usize,
    a1: Tensor,
    r1: Tensor,
    a2: Tensor,
    out: Tensor,
    da2: Tensor,
    dr1: Tensor,
    da1: Tensor,
    dx: Tensor,
    bn1: BnSaved,
    bn2: BnSaved,
    /// The downsample's workspace, exactly when the block has one.
    down: Option<DownWs>,
}

/// A bottleneck block's activations and gradients (input h × w).
struct BottleneckWs {
    h: usize,
    w: usize,
    a1: Tensor,
    r1: Tensor,
    a2: Tensor,
    r2: Tensor,
    a3: Tensor,
    out: Tensor,
    da3: Tensor,
    dr2: Tensor,
    da2: Tensor,
    dr1: Tensor,
    da1: Tensor,
    dx: Tensor,
    bn1: BnSaved,
    bn2: BnSaved,
    bn3: BnSaved,
    down: Option<DownWs>,
}

enum BlockWs {
    Basic(Box<BasicWs>),
    Bottleneck(Box<BottleneckWs>),
}

impl BlockWs {
    /// The block's output (after its ReLU).
    fn out(&self) -> &Tensor {
        match self {
            BlockWs::Basic(w) => &w.out,
            BlockWs::Bottleneck(w) => &w.out,
        }
    }

    /// The gradient with respect to the block's input.
    fn dx(&self) -> &Tensor {
        match self {
            BlockWs::Basic(w) => &w.dx,
            BlockWs::Bottleneck(w) => &w.dx,
        }
    }
}

/// A downsampling shortcut's workspace (1×1 convolution and batch norm).
struct DownWs {
    /// The convolution's output and the batch norm's.
    ad: Tensor,
    bd: Tensor,
    /// conv1's input gradient, before the downsample's is added (without
    /// a downsample the shortcut's add is fused instead).
    dx1: Tensor,
    dad: Tensor,
    bn: BnSaved,
}

/// A block and its workspace disagree on the downsample: a workspace made
/// for another model.
fn mismatched() -> crate::Error {
    crate::Error::shape(
        "resnet block workspace",
        "made for another model: the block and its workspace disagree on the downsample",
    )
}

/// ResNet's own activations, saved statistics and gradients of one batch
/// shape (inside an [`EncoderWorkspace`]).
struct ResNetWorkspace {
    scratch: ConvScratch,
    a0: Tensor,
    r0: Tensor,
    bn0: BnSaved,
    /// ImageNet stem: pooled output, argmax, gradient before the pool.
    pool: Option<(Tensor, Tensor, Tensor)>,
    blocks: Vec<BlockWs>,
    last_hw: usize,
    dlast: Tensor,
    da0: Tensor,
}

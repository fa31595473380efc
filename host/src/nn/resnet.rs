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

use scorecl_core::rng::{stream_id, Philox, Purpose};

use crate::error::{GpuError, Result};
use crate::gpu::Gpu;
use crate::nn::params::ParamStore;
use crate::ops::batchnorm::{self, BnSpec, BnTensors};
use crate::ops::conv::{self, ConvPrecision, ConvScratch, ConvShape, DxAdd};
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

struct Conv {
    w: usize,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn shape(&self, n: usize, h: usize, w: usize) -> ConvShape {
        ConvShape {
            n,
            cin: self.cin,
            h,
            w,
            cout: self.cout,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        }
    }
}

struct Bn {
    gamma: usize,
    beta: usize,
    rm: usize,
    rv: usize,
    nbt: usize,
    c: usize,
}

/// A basic block: conv 3×3 (stride) – bn – relu – conv 3×3 – bn, plus the
/// shortcut, relu.
struct Basic {
    conv1: Conv,
    bn1: Bn,
    conv2: Conv,
    bn2: Bn,
    down: Option<(Conv, Bn)>,
}

/// A bottleneck block: conv 1×1 – bn – relu – conv 3×3 (stride) – bn –
/// relu – conv 1×1 (4× the width) – bn, plus the shortcut, relu.
struct Bottleneck {
    conv1: Conv,
    bn1: Bn,
    conv2: Conv,
    bn2: Bn,
    conv3: Conv,
    bn3: Bn,
    down: Option<(Conv, Bn)>,
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
    conv1: Conv,
    bn1: Bn,
    blocks: Vec<Block>,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    store: ParamStore,
    rng_seed: u64,
}

impl Builder<'_> {
    fn conv(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Conv> {
        let n = cout * cin * k * k;
        let mut init = Vec::new();
        init.try_reserve_exact(n).map_err(|e| {
            GpuError::shape(
                "model.width",
                format!("{name}.weight: {} bytes of host memory: {e}", 4 * n as u128),
            )
        })?;
        init.resize(n, 0.0f32);
        let rng = Philox::new(
            self.rng_seed,
            stream_id(Purpose::Init, self.store.params.len() as u64),
        );
        rng.fill_normal(0, &mut init);
        // kaiming_normal_(mode="fan_out", nonlinearity="relu")
        let std = (2.0 / (cout * k * k) as f32).sqrt();
        init.iter_mut().for_each(|v| *v *= std);
        let w = self.store.param(
            self.gpu,
            &format!("{name}.weight"),
            &[cout, cin, k, k],
            &init,
        )?;
        Ok(Conv {
            w,
            cin,
            cout,
            k,
            stride,
            pad,
        })
    }

    /// The 1×1 projection shortcut torchvision adds where the stride or
    /// the width changes.
    fn downsample(
        &mut self,
        p: &str,
        inplanes: usize,
        outplanes: usize,
        stride: usize,
    ) -> Result<Option<(Conv, Bn)>> {
        if stride == 1 && inplanes == outplanes {
            return Ok(None);
        }
        let c = self.conv(
            &format!("{p}.downsample.0"),
            inplanes,
            outplanes,
            1,
            stride,
            0,
        )?;
        Ok(Some((c, self.bn(&format!("{p}.downsample.1"), outplanes)?)))
    }

    fn bn(&mut self, name: &str, c: usize) -> Result<Bn> {
        let (g, s) = (self.gpu, &mut self.store);
        Ok(Bn {
            gamma: s.param(g, &format!("{name}.weight"), &[c], &vec![1.0; c])?,
            beta: s.param(g, &format!("{name}.bias"), &[c], &vec![0.0; c])?,
            rm: s.state(g, &format!("{name}.running_mean"), &[c], &vec![0.0; c])?,
            rv: s.state(g, &format!("{name}.running_var"), &[c], &vec![1.0; c])?,
            nbt: s.counter(&format!("{name}.num_batches_tracked")),
            c,
        })
    }
}

impl ResNet {
    /// A freshly initialised network; `seed` fixes the initial weights.
    pub fn new(gpu: &Gpu, cfg: ResNetConfig, seed: u64) -> Result<ResNet> {
        if cfg.width == 0 {
            return Err(GpuError::shape("resnet width", "must be at least 1"));
        }
        let mut b = Builder {
            gpu,
            store: ParamStore::default(),
            rng_seed: seed,
        };
        let w = cfg.width;
        let conv1 = match cfg.stem {
            Stem::Cifar { padding } => b.conv("conv1", 3, w, 3, 1, padding)?,
            Stem::ImageNet => b.conv("conv1", 3, w, 7, 2, 3)?,
        };
        let bn1 = b.bn("bn1", w)?;
        let mut blocks = Vec::new();
        let mut inplanes = w;
        for (stage, &count) in cfg.blocks.iter().enumerate() {
            let planes = cfg.stage_width(stage);
            let outplanes = planes * cfg.block.expansion();
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let p = format!("layer{}.{i}", stage + 1);
                // torchvision's order: the block's layers, then the
                // downsample.
                let block = match cfg.block {
                    BlockKind::Basic => {
                        let conv1 =
                            b.conv(&format!("{p}.conv1"), inplanes, planes, 3, stride, 1)?;
                        let bn1 = b.bn(&format!("{p}.bn1"), planes)?;
                        let conv2 = b.conv(&format!("{p}.conv2"), planes, planes, 3, 1, 1)?;
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
                        let conv1 = b.conv(&format!("{p}.conv1"), inplanes, planes, 1, 1, 0)?;
                        let bn1 = b.bn(&format!("{p}.bn1"), planes)?;
                        let conv2 = b.conv(&format!("{p}.conv2"), planes, planes, 3, stride, 1)?;
                        let bn2 = b.bn(&format!("{p}.bn2"), planes)?;
                        let conv3 = b.conv(&format!("{p}.conv3"), planes, outplanes, 1, 1, 0)?;
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
        })
    }

    /// Dimension of the features ([`ResNetConfig::feature_dim`]).
    pub fn feature_dim(&self) -> usize {
        self.cfg.feature_dim()
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

    /// Multiply-adds of one forward pass of one h × w image (convolutions).
    pub fn macs_per_image(&self, h: usize, w: usize) -> usize {
        self.conv_shapes(1, h, w).iter().map(|s| s.macs()).sum()
    }

    /// Buffers for batches of n images of h × w; with `input_grad` the
    /// backward also writes the gradient with respect to the input.
    pub fn workspace(
        &self,
        gpu: &Gpu,
        n: usize,
        h: usize,
        w: usize,
        input_grad: bool,
    ) -> Result<ResNetWorkspace> {
        let t = |len: usize| gpu.tensor(&[len], DType::F32);
        let bnw = |c: usize| -> Result<BnWs> {
            Ok(BnWs {
                mean: t(c)?,
                invstd: t(c)?,
                sums: t(2 * c)?,
            })
        };
        let s0 = self.conv1.shape(n, h, w);
        let stem_len = s0.out_len();
        let pool = match self.cfg.stem {
            Stem::ImageNet => {
                let p = pool_shape(n, self.cfg.width, s0.oh(), s0.ow());
                Some((
                    t(p.out_len())?,
                    ParamStore::indices(gpu, p.out_len())?,
                    t(stem_len)?,
                ))
            }
            Stem::Cifar { .. } => None,
        };
        let (mut hh, mut ww) = self.stem_out(h, w);
        let mut blocks = Vec::new();
        let downw = |down: &Option<(Conv, Bn)>, out_len: usize, in_len: usize| {
            down.as_ref()
                .map(|(_, bn)| {
                    Ok::<_, crate::error::GpuError>(DownWs {
                        ad: t(out_len)?,
                        bd: t(out_len)?,
                        dx1: t(in_len)?,
                        dad: t(out_len)?,
                        bn: bnw(bn.c)?,
                    })
                })
                .transpose()
        };
        for b in &self.blocks {
            match b {
                Block::Basic(b) => {
                    let s1 = b.conv1.shape(n, hh, ww);
                    let (out_len, in_len) = (s1.out_len(), s1.in_len());
                    blocks.push(BlockWs::Basic(Box::new(BasicWs {
                        h: hh,
                        w: ww,
                        a1: t(out_len)?,
                        r1: t(out_len)?,
                        a2: t(out_len)?,
                        out: t(out_len)?,
                        da2: t(out_len)?,
                        dr1: t(out_len)?,
                        da1: t(out_len)?,
                        dx: t(in_len)?,
                        bn1: bnw(b.bn1.c)?,
                        bn2: bnw(b.bn2.c)?,
                        down: downw(&b.down, out_len, in_len)?,
                    })));
                    (hh, ww) = (s1.oh(), s1.ow());
                }
                Block::Bottleneck(b) => {
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
                        da3: t(l3)?,
                        dr2: t(l2)?,
                        da2: t(l2)?,
                        dr1: t(l1)?,
                        da1: t(l1)?,
                        dx: t(in_len)?,
                        bn1: bnw(b.bn1.c)?,
                        bn2: bnw(b.bn2.c)?,
                        bn3: bnw(b.bn3.c)?,
                        down: downw(&b.down, l3, in_len)?,
                    })));
                    (hh, ww) = (s2.oh(), s2.ow());
                }
            }
        }
        let last = blocks
            .last()
            .map_or(stem_len / n, |_| self.feature_dim() * hh * ww);
        Ok(ResNetWorkspace {
            n,
            h,
            w,
            scratch: ConvScratch::for_shapes(gpu, &self.conv_shapes(n, h, w), self.precision)?,
            a0: t(stem_len)?,
            r0: t(stem_len)?,
            bn0: bnw(self.cfg.width)?,
            pool,
            blocks,
            last_hw: hh * ww,
            features: gpu.tensor(&[n, self.feature_dim()], DType::F32)?,
            dlast: t(n * last)?,
            da0: t(stem_len)?,
            dinput: if input_grad {
                Some(t(n * 3 * h * w)?)
            } else {
                None
            },
        })
    }

    fn bn_tensors<'a>(&'a self, bn: &Bn, saved: &'a BnWs) -> BnTensors<'a> {
        let s = &self.store;
        BnTensors {
            gamma: &s.params[bn.gamma].value,
            beta: &s.params[bn.beta].value,
            running_mean: &s.states[bn.rm].value,
            running_var: &s.states[bn.rv].value,
            mean: &saved.mean,
            invstd: &saved.invstd,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bn_forward(
        &self,
        step: &mut Step,
        bn: &Bn,
        saved: &BnWs,
        x: &Tensor,
        n: usize,
        hw: usize,
        training: bool,
        relu: bool,
        y: &Tensor,
    ) -> Result<()> {
        let spec = BnSpec {
            training,
            relu,
            ..BnSpec::new(n, bn.c, hw)
        };
        batchnorm::forward(step, x, &self.bn_tensors(bn, saved), &spec, y)?;
        if training {
            self.store.tick(bn.nbt);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn bn_backward(
        &self,
        step: &mut Step,
        bn: &Bn,
        saved: &BnWs,
        x: &Tensor,
        (dy, relu_out): (&Tensor, Option<&Tensor>),
        n: usize,
        hw: usize,
        dx: &Tensor,
    ) -> Result<()> {
        let spec = BnSpec::new(n, bn.c, hw);
        let s = &self.store;
        let t = self.bn_tensors(bn, saved);
        let (dg, db) = (&s.params[bn.gamma].grad, &s.params[bn.beta].grad);
        match relu_out {
            // The ReLU after this batch norm: its backward fused in.
            Some(y) => batchnorm::backward_relu(step, x, dy, y, &t, &spec, &saved.sums, dg, db, dx),
            None => batchnorm::backward(step, x, dy, &t, &spec, &saved.sums, dg, db, dx),
        }
    }

    fn weight(&self, c: &Conv) -> &Tensor {
        &self.store.params[c.w].value
    }

    fn weight_grad(&self, c: &Conv) -> &Tensor {
        &self.store.params[c.w].grad
    }

    /// Records the forward pass of `x` (n × 3 × h × w, the workspace's
    /// shape) into `ws.features` (n × feature_dim). In training, batch
    /// statistics are used and the running statistics updated.
    pub fn forward(
        &self,
        step: &mut Step,
        ws: &ResNetWorkspace,
        x: &Tensor,
        training: bool,
    ) -> Result<()> {
        let n = ws.n;
        x.expect_len("encoder input", n * 3 * ws.h * ws.w)?;
        let s0 = self.conv1.shape(n, ws.h, ws.w);
        conv::conv2d(step, x, self.weight(&self.conv1), &s0, &ws.scratch, &ws.a0)?;
        self.bn_forward(
            step,
            &self.bn1,
            &ws.bn0,
            &ws.a0,
            n,
            s0.oh() * s0.ow(),
            training,
            true,
            &ws.r0,
        )?;
        let mut cur = &ws.r0;
        if let Some((pooled, arg, _)) = &ws.pool {
            conv::maxpool(
                step,
                &ws.r0,
                &pool_shape(n, self.cfg.width, s0.oh(), s0.ow()),
                pooled,
                arg,
            )?;
            cur = pooled;
        }
        for (b, bw) in self.blocks.iter().zip(&ws.blocks) {
            match (b, bw) {
                (Block::Basic(b), BlockWs::Basic(w)) => {
                    self.block_forward(step, b, w, n, cur, &ws.scratch, training)?
                }
                (Block::Bottleneck(b), BlockWs::Bottleneck(w)) => {
                    self.bottleneck_forward(step, b, w, n, cur, &ws.scratch, training)?
                }
                _ => return Err(mismatched()),
            }
            cur = bw.out();
        }
        conv::avgpool(step, cur, n, self.feature_dim(), ws.last_hw, &ws.features)
    }

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
        let s1 = b.conv1.shape(n, w.h, w.w);
        let hw = s1.oh() * s1.ow();
        conv::conv2d(step, x, self.weight(&b.conv1), &s1, scratch, &w.a1)?;
        self.bn_forward(step, &b.bn1, &w.bn1, &w.a1, n, hw, training, true, &w.r1)?;
        let s2 = b.conv2.shape(n, s1.oh(), s1.ow());
        conv::conv2d(step, &w.r1, self.weight(&b.conv2), &s2, scratch, &w.a2)?;
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
        let spec = BnSpec {
            training,
            relu: true,
            ..BnSpec::new(n, b.bn2.c, hw)
        };
        let t = self.bn_tensors(&b.bn2, &w.bn2);
        batchnorm::forward_add(step, &w.a2, &t, &spec, shortcut, &w.out)?;
        if training {
            self.store.tick(b.bn2.nbt);
        }
        Ok(())
    }

    /// Records the backward pass for the feature gradient `dfeatures`
    /// (n × feature_dim) after [`ResNet::forward`] in training mode:
    /// parameter gradients are accumulated, and the input gradient written
    /// to `ws.dinput` if the workspace has one.
    pub fn backward(
        &self,
        step: &mut Step,
        ws: &ResNetWorkspace,
        x: &Tensor,
        dfeatures: &Tensor,
    ) -> Result<()> {
        let n = ws.n;
        dfeatures.expect_len("feature gradient", n * self.feature_dim())?;
        conv::avgpool_backward(
            step,
            dfeatures,
            n,
            self.feature_dim(),
            ws.last_hw,
            &ws.dlast,
        )?;
        let mut dcur = &ws.dlast;
        for i in (0..self.blocks.len()).rev() {
            let input = if i == 0 {
                ws.pool.as_ref().map_or(&ws.r0, |(p, _, _)| p)
            } else {
                ws.blocks[i - 1].out()
            };
            match (&self.blocks[i], &ws.blocks[i]) {
                (Block::Basic(b), BlockWs::Basic(w)) => {
                    self.block_backward(step, b, w, n, input, dcur, &ws.scratch)?
                }
                (Block::Bottleneck(b), BlockWs::Bottleneck(w)) => {
                    self.bottleneck_backward(step, b, w, n, input, dcur, &ws.scratch)?
                }
                _ => return Err(mismatched()),
            }
            dcur = ws.blocks[i].dx();
        }
        let s0 = self.conv1.shape(n, ws.h, ws.w);
        if let Some((_, arg, dpool)) = &ws.pool {
            conv::maxpool_backward(
                step,
                dcur,
                arg,
                &pool_shape(n, self.cfg.width, s0.oh(), s0.ow()),
                dpool,
            )?;
            dcur = dpool;
        }
        self.bn_backward(
            step,
            &self.bn1,
            &ws.bn0,
            &ws.a0,
            (dcur, Some(&ws.r0)),
            n,
            s0.oh() * s0.ow(),
            &ws.da0,
        )?;
        conv::conv2d_backward(
            step,
            x,
            self.weight(&self.conv1),
            &ws.da0,
            &s0,
            &ws.scratch,
            self.weight_grad(&self.conv1),
            ws.dinput.as_ref(),
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
        let s2 = b.conv2.shape(n, s1.oh(), s1.ow());
        let hw = s1.oh() * s1.ow();
        // The block's output ReLU: its backward is read inside bn2's
        // backward, the downsample's, and the identity shortcut's add.
        let relu = (dout, Some(&w.out));
        self.bn_backward(step, &b.bn2, &w.bn2, &w.a2, relu, n, hw, &w.da2)?;
        conv::conv2d_backward(
            step,
            &w.r1,
            self.weight(&b.conv2),
            &w.da2,
            &s2,
            scratch,
            self.weight_grad(&b.conv2),
            Some(&w.dr1),
        )?;
        self.bn_backward(
            step,
            &b.bn1,
            &w.bn1,
            &w.a1,
            (&w.dr1, Some(&w.r1)),
            n,
            hw,
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
        down: (&Option<(Conv, Bn)>, &'a Option<DownWs>),
        x: &'a Tensor,
        n: usize,
        (h, w): (usize, usize),
        scratch: &ConvScratch,
        training: bool,
    ) -> Result<&'a Tensor> {
        match down {
            (Some((dc, dbn)), Some(d)) => {
                let s = dc.shape(n, h, w);
                conv::conv2d(step, x, self.weight(dc), &s, scratch, &d.ad)?;
                let hw = s.oh() * s.ow();
                self.bn_forward(step, dbn, &d.bn, &d.ad, n, hw, training, false, &d.bd)?;
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
        (conv1, s1): (&Conv, &ConvShape),
        down: (&Option<(Conv, Bn)>, &Option<DownWs>),
        x: &Tensor,
        (da1, dx): (&Tensor, &Tensor),
        (dout, out): (&Tensor, &Tensor),
        n: usize,
        (h, w): (usize, usize),
        scratch: &ConvScratch,
    ) -> Result<()> {
        match down {
            (Some((dc, dbn)), Some(d)) => {
                conv::conv2d_backward(
                    step,
                    x,
                    self.weight(conv1),
                    da1,
                    s1,
                    scratch,
                    self.weight_grad(conv1),
                    Some(&d.dx1),
                )?;
                let s = dc.shape(n, h, w);
                let hw = s.oh() * s.ow();
                self.bn_backward(step, dbn, &d.bn, &d.ad, (dout, Some(out)), n, hw, &d.dad)?;
                // dx = dx1 + the downsample's input gradient (fused).
                conv::conv2d_backward_add(
                    step,
                    x,
                    self.weight(dc),
                    &d.dad,
                    &s,
                    scratch,
                    self.weight_grad(dc),
                    Some(dx),
                    DxAdd::Add(&d.dx1),
                )
            }
            // dx = conv1's input gradient + relu'(out)·dout (fused).
            (None, None) => conv::conv2d_backward_add(
                step,
                x,
                self.weight(conv1),
                da1,
                s1,
                scratch,
                self.weight_grad(conv1),
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
        let s1 = b.conv1.shape(n, w.h, w.w);
        let hw1 = s1.oh() * s1.ow();
        conv::conv2d(step, x, self.weight(&b.conv1), &s1, scratch, &w.a1)?;
        self.bn_forward(step, &b.bn1, &w.bn1, &w.a1, n, hw1, training, true, &w.r1)?;
        let s2 = b.conv2.shape(n, s1.oh(), s1.ow());
        let hw2 = s2.oh() * s2.ow();
        conv::conv2d(step, &w.r1, self.weight(&b.conv2), &s2, scratch, &w.a2)?;
        self.bn_forward(step, &b.bn2, &w.bn2, &w.a2, n, hw2, training, true, &w.r2)?;
        let s3 = b.conv3.shape(n, s2.oh(), s2.ow());
        conv::conv2d(step, &w.r2, self.weight(&b.conv3), &s3, scratch, &w.a3)?;
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
        let spec = BnSpec {
            training,
            relu: true,
            ..BnSpec::new(n, b.bn3.c, hw2)
        };
        let t = self.bn_tensors(&b.bn3, &w.bn3);
        batchnorm::forward_add(step, &w.a3, &t, &spec, shortcut, &w.out)?;
        if training {
            self.store.tick(b.bn3.nbt);
        }
        Ok(())
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
        let s3 = b.conv3.shape(n, s2.oh(), s2.ow());
        let (hw1, hw2) = (s1.oh() * s1.ow(), s2.oh() * s2.ow());
        let relu = (dout, Some(&w.out));
        self.bn_backward(step, &b.bn3, &w.bn3, &w.a3, relu, n, hw2, &w.da3)?;
        conv::conv2d_backward(
            step,
            &w.r2,
            self.weight(&b.conv3),
            &w.da3,
            &s3,
            scratch,
            self.weight_grad(&b.conv3),
            Some(&w.dr2),
        )?;
        self.bn_backward(
            step,
            &b.bn2,
            &w.bn2,
            &w.a2,
            (&w.dr2, Some(&w.r2)),
            n,
            hw2,
            &w.da2,
        )?;
        conv::conv2d_backward(
            step,
            &w.r1,
            self.weight(&b.conv2),
            &w.da2,
            &s2,
            scratch,
            self.weight_grad(&b.conv2),
            Some(&w.dr1),
        )?;
        self.bn_backward(
            step,
            &b.bn1,
            &w.bn1,
            &w.a1,
            (&w.dr1, Some(&w.r1)),
            n,
            hw1,
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

struct BnWs {
    mean: Tensor,
    invstd: Tensor,
    sums: Tensor,
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
    bn1: BnWs,
    bn2: BnWs,
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
    bn1: BnWs,
    bn2: BnWs,
    bn3: BnWs,
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
    bn: BnWs,
}

/// A block and its workspace disagree on the downsample: a workspace made
/// for another model.
fn mismatched() -> crate::error::GpuError {
    crate::error::GpuError::shape(
        "resnet block workspace",
        "made for another model: the block and its workspace disagree on the downsample",
    )
}

/// Activations, saved statistics and gradients of one batch shape.
pub struct ResNetWorkspace {
    /// Batch size.
    pub n: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    scratch: ConvScratch,
    a0: Tensor,
    r0: Tensor,
    bn0: BnWs,
    /// ImageNet stem: pooled output, argmax, gradient before the pool.
    pool: Option<(Tensor, Tensor, Tensor)>,
    blocks: Vec<BlockWs>,
    last_hw: usize,
    /// The features (n × feature_dim) of the last forward.
    pub features: Tensor,
    dlast: Tensor,
    da0: Tensor,
    /// The input gradient of the last backward (when asked for).
    pub dinput: Option<Tensor>,
}

impl ResNetWorkspace {
    /// The convolutions' operand storage in effect (f32 where f16 was asked
    /// for but the device has no shader-f16).
    pub fn precision(&self) -> ConvPrecision {
        self.scratch.precision()
    }
}

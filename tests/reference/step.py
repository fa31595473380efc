#!/usr/bin/env python3
"""One whole ScoreCL training step in PyTorch (float64): the reference for
scorecl's trainer (host/tests/step_reference.rs), in the manner of llm.c's
test_gpt2 (one dumped step, every tensor compared).

How to run (the tests only read the committed files):

    pip install torch torchvision safetensors
    python3 tests/reference/step.py                  # writes tests/fixtures/step/*.safetensors
    python3 tests/reference/step.py --only simclr    # one of them

One file per method (simclr, simsiam, wmse, vicreg), each one step of that
method with ScoreCL on, on a width-8 ResNet-18 (CIFAR stem, torchvision's
BasicBlock, tests/reference/resnet.py), the method's heads as scorecl builds
them (host/src/train/methods/), and the score network (host/src/nn/score.rs,
written out again below), all with random weights, batch-norm parameters and
running statistics. The batch is n = 8 random 32x32 images; the two views
and the DSM step's noise are given (scorecl's trainer takes them through
Trainer::step_given; its augmentation is checked against torchvision on its
own). The step, in the trainer's order:

  1. pair weights: the score network on both views (pixel scale) at
     sigma_ref, S(v) = ||s(v)|| / sqrt(D), raw = |S(v1) - S(v2)|^gamma,
     w = raw / mean(raw), mixed with alpha and clamped at w_max (constants);
  2. encoder and heads on each view (batch statistics per view, view 1
     first), the method's weighted loss, one backward;
  3. LARS (solo-learn's, tests/reference/generate.py) on encoder and heads
     at the schedule's rate of step 0;
  4. the DSM loss of the score network on clean + sigma * eps and its
     gradient.

Saved (float32 unless noted; `backbone.` the encoder with torchvision's
names, `projector.` / `predictor.` the heads, `score.` the score network):

  param.<name>    every parameter and state before the step (num_batches_tracked: int64)
  images          the batch as bytes (n x 3 x 32 x 32, uint8); clean = images / 255
  clean, views01, views, dsm_noise, dsm_sigma   the step's given inputs
  stats           S of each view (2n: view 1's, then view 2's)
  weights, loss, dsm_loss
  grad.<name>     every parameter's gradient (the encoder's summed over both views)
  state.<name>    running statistics after the step (num_batches_tracked: int64)
  update.<name>   the LARS update of every encoder and head parameter, after
                  minus before (simclr only)

The configuration the step ran is in the file's metadata (`config`, TOML
that scorecl's TrainConfig::parse reads).
"""

import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import LARS, simclr_ref, simsiam_ref, vicreg_ref, wmse_ref  # noqa: E402
from resnet import ResNetW, randomise  # noqa: E402

N = 8
SIZE = 32
# [scorecl]'s weight keys below (COMMON): sigma_ref = sigma_min.
SIGMA_REF, GAMMA, ALPHA, W_MAX = 0.01, 1.0, 1.0, 5.0
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)

COMMON = """
[model]
width = 8
stem = "cifar"

[data]
dataset = "builtin:8"
size = 32
normalize = "cifar"

[optimizer]
name = "lars"
lr = 3.2
weight_decay = 1e-4
momentum = 0.9
eta = 0.02
clip_lr = true
exclude_bias_n_norm = true

[schedule]
warmup_epochs = 0
min_lr = 0.0

[train]
epochs = 2
batch_size = 8
seed = 0

[scorecl]
mode = "on"
width = 8
depth = 1
lr = 1e-3
sigma_max = 1.0
sigma_min = 0.01
levels = 10
gamma = 1.0
alpha = 1.0
w_max = 5.0
"""

METHODS = {
    "simclr": """method = "simclr"

[simclr]
temperature = 0.2
proj_hidden_dim = 32
proj_output_dim = 16
""",
    "simsiam": """method = "simsiam"

[simsiam]
proj_hidden_dim = 32
proj_output_dim = 16
pred_hidden_dim = 8
""",
    "wmse": """method = "wmse"

[wmse]
proj_hidden_dim = 32
proj_output_dim = 4
w_size = 8
eps = 0.0
""",
    "vicreg": """method = "vicreg"

[vicreg]
proj_hidden_dim = 32
proj_output_dim = 16
sim_coeff = 25.0
std_coeff = 25.0
cov_coeff = 1.0
""",
}


def heads(method, feat):
    """The heads of host/src/train/methods/<method>.rs as nn.Sequential."""
    if method == "simclr":
        return nn.Sequential(nn.Linear(feat, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16)), None
    if method == "wmse":
        return nn.Sequential(nn.Linear(feat, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)), None
    if method == "vicreg":
        return nn.Sequential(
            nn.Linear(feat, 32), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Linear(32, 16),
        ), None
    if method == "simsiam":
        proj = nn.Sequential(
            nn.Linear(feat, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Linear(32, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Linear(32, 16), nn.BatchNorm1d(16, affine=False),
        )
        pred = nn.Sequential(nn.Linear(16, 8, bias=False), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 16))
        return proj, pred
    raise ValueError(method)


class Block(nn.Module):
    """block(x) = x + conv2(relu(film(conv1(relu(x)), log sigma)))."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.film = nn.Linear(1, 2 * c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.c = c

    def forward(self, x, logsig):
        a = self.conv1(F.relu(x))
        gb = self.film(logsig[:, None])
        g, b = gb[:, : self.c, None, None], gb[:, self.c :, None, None]
        return x + self.conv2(F.relu(a * (1 + g) + b))


class ScoreNet(nn.Module):
    """host/src/nn/score.rs: s(x, sigma) = f(x, sigma) / sigma, a two-resolution
    U-Net of FiLM-conditioned residual blocks (depth 1)."""

    def __init__(self, c):
        super().__init__()
        self.conv_in = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.block1 = nn.ModuleList([Block(c)])
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False)
        self.block2 = nn.ModuleList([Block(2 * c)])
        self.up = nn.Conv2d(2 * c, c, 3, padding=1, bias=False)
        self.block3 = nn.ModuleList([Block(c)])
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1, bias=False)

    def forward(self, x, sigma):
        logsig = sigma.log()
        y1 = self.conv_in(x)
        for b in self.block1:
            y1 = b(y1, logsig)
        y2 = self.down(y1)
        for b in self.block2:
            y2 = b(y2, logsig)
        m = self.up(F.interpolate(y2, scale_factor=2, mode="nearest")) + y1
        for b in self.block3:
            m = b(m, logsig)
        return self.conv_out(F.relu(m)) / sigma[:, None, None, None]


def randomise_all(modules, gen):
    """Random weights everywhere (FiLM and conv_out too, which scorecl starts
    at zero: a zero score would make every weight 1 and check nothing)."""
    with torch.no_grad():
        for m in modules:
            for mod in m.modules():
                if isinstance(mod, nn.Conv2d):
                    fan_in = mod.weight[0].numel()
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                elif isinstance(mod, nn.Linear):
                    bound = 1.0 / math.sqrt(mod.in_features)
                    mod.weight.copy_((torch.rand(mod.weight.shape, generator=gen) * 2 - 1) * bound)
                    if mod.bias is not None:
                        mod.bias.copy_((torch.rand(mod.bias.shape, generator=gen) * 2 - 1) * bound)
                elif isinstance(mod, nn.BatchNorm1d):
                    if mod.affine:
                        mod.weight.copy_(torch.rand(mod.weight.shape, generator=gen) + 0.5)
                        mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.1)
                    mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 0.1)
                    mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) + 0.5)
                    mod.num_batches_tracked.fill_(3)
        score = modules[-1]
        for b in score.modules():
            if isinstance(b, Block):
                b.film.weight.mul_(0.5)
                b.film.bias.mul_(0.5)
        # A small output, as a trained network's: a DSM loss near ½·D.
        score.conv_out.weight.mul_(0.02)


def round_to_f32(modules):
    """Every value rounded to float32: what the file holds is what ran."""
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                if t.is_floating_point():
                    t.copy_(t.float().double())


def named(prefix, module):
    out = {}
    if module is None:
        return out
    for k, v in module.state_dict().items():
        out[f"{prefix}{k}"] = v
    return out


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def step(method, out, seed):
    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    config = METHODS[method] + COMMON

    encoder = ResNetW(8, "cifar").double()
    randomise(encoder, gen)
    proj, pred = heads(method, 64)
    proj, pred = proj.double(), pred.double() if pred is not None else None
    score = ScoreNet(8).double()
    heads_and_score = [proj] + ([pred] if pred is not None else []) + [score]
    randomise_all(heads_and_score, gen)
    round_to_f32([encoder] + heads_and_score)
    parts = [("backbone.", encoder), ("projector.", proj), ("predictor.", pred), ("score.", score)]
    tensors = {}
    for prefix, m in parts:
        for k, v in named(prefix, m).items():
            tensors[f"param.{k}"] = f32(v) if v.is_floating_point() else v.clone()

    # The batch and the step's draws, as float32 values.
    images = torch.randint(0, 256, (N, 3, SIZE, SIZE), generator=gen, dtype=torch.uint8)
    clean = (images.to(torch.float32) * (1.0 / 255.0)).double()
    views01 = []
    for _ in range(2):
        gain = torch.rand(N, 1, 1, 1, generator=gen) * 0.8 + 0.4
        shift = torch.randn(N, 3, 1, 1, generator=gen) * 0.1
        mix = torch.rand(N, 1, 1, 1, generator=gen) * 0.6
        noise = torch.rand(N, 3, SIZE, SIZE, generator=gen)
        views01.append(((1 - mix) * (clean * gain + shift) + mix * noise).clamp(0, 1))
    views01 = torch.cat(views01).float().double()
    mean = torch.tensor(CIFAR_MEAN)[None, :, None, None]
    std = torch.tensor(CIFAR_STD)[None, :, None, None]
    views = ((views01 - mean) / std).float().double()
    sched = [math.exp(math.log(1.0) + k / 9 * (math.log(0.01) - math.log(1.0))) for k in range(10)]
    levels = torch.randint(0, 10, (N,), generator=gen)
    dsm_sigma = torch.tensor([sched[k] for k in levels]).float().double()
    dsm_noise = torch.randn(N, 3, SIZE, SIZE, generator=gen).float().double()
    tensors.update(images=images, clean=f32(clean), views01=f32(views01), views=f32(views),
                   dsm_noise=f32(dsm_noise), dsm_sigma=f32(dsm_sigma))

    # 1. Pair weights from the score network at sigma_ref = sigma_min.
    d = 3 * SIZE * SIZE
    with torch.no_grad():
        s = score(views01, torch.full((2 * N,), SIGMA_REF).float().double())
        stats = s.flatten(1).norm(dim=1) / math.sqrt(d)
        raw = (stats[:N] - stats[N:]).abs() ** GAMMA
        w = raw / raw.mean()
        w = ((1 - ALPHA) + ALPHA * w).clamp(max=W_MAX)
    tensors.update(stats=f32(stats), weights=f32(w))

    # 2. Encoder and heads per view, the weighted loss, one backward.
    encoder.train(), proj.train()
    if pred is not None:
        pred.train()
    zs, ps = [], []
    for v in range(2):
        z = proj(encoder(views[v * N:(v + 1) * N]))
        zs.append(z)
        if pred is not None:
            ps.append(pred(z))
    if method == "simclr":
        loss = simclr_ref(zs[0], zs[1], w, 0.2)
    elif method == "simsiam":
        loss = simsiam_ref(ps[0], ps[1], zs[0], zs[1], w)
    elif method == "wmse":
        loss = wmse_ref(zs[0], zs[1], w, 0.0, 8)
    else:
        loss = vicreg_ref(zs[0], zs[1], w, 25.0, 25.0, 1.0)
    loss.backward()
    tensors["loss"] = f32(loss.reshape(1))
    trained = [(p, m) for p, m in parts[:3] if m is not None]
    for prefix, m in trained:
        for k, p in m.named_parameters():
            tensors[f"grad.{prefix}{k}"] = f32(p.grad)
        for k, b in m.named_buffers():
            tensors[f"state.{prefix}{k}"] = f32(b) if b.is_floating_point() else b.clone()

    # 3. LARS at step 0's rate: warm-up 0, so the base rate lr * n / 256.
    if method == "simclr":
        lr = 3.2 * N / 256
        params = [p for _, m in trained for p in m.parameters()]
        before = [p.detach().clone() for p in params]
        LARS(params, lr=lr, momentum=0.9, weight_decay=1e-4, eta=0.02,
             clip_lars_lr=True, exclude_bias_n_norm_lars=True).step()
        named_params = [(prefix + k, p) for prefix, m in trained for k, p in m.named_parameters()]
        for (name, p), p0 in zip(named_params, before):
            tensors[f"update.{name}"] = f32(p - p0)

    # 4. The score network's DSM loss and gradient.
    x_noisy = clean + dsm_sigma[:, None, None, None] * dsm_noise
    sc = score(x_noisy, dsm_sigma)
    r = dsm_sigma[:, None] * sc.flatten(1) + dsm_noise.flatten(1)
    dsm = 0.5 * (r ** 2).sum() / N
    dsm.backward()
    tensors["dsm_loss"] = f32(dsm.reshape(1))
    for k, p in score.named_parameters():
        tensors[f"grad.score.{k}"] = f32(p.grad)

    save_file({k: v.contiguous() for k, v in tensors.items()}, out,
              metadata={"format": "pt", "config": config, "torch": torch.__version__})
    print(f"wrote {out}: {len(tensors)} tensors, loss {loss.item():.6f}, "
          f"weights {[round(float(x), 3) for x in w]}, dsm {dsm.item():.3f} (½·D = {d / 2}), torch {torch.__version__}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "step"))
    ap.add_argument("--only", choices=sorted(METHODS))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for seed, method in enumerate(["simclr", "simsiam", "wmse", "vicreg"]):
        if args.only in (None, method):
            step(method, os.path.join(args.out, f"{method}.safetensors"), 10 + seed)


if __name__ == "__main__":
    main()

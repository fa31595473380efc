"""The PyTorch side of `bench/compare.sh`: one SimCLR + ScoreCL training step
as scorecl takes it, in PyTorch, timed in images/s after warm-up.

Same as `scorecl bench train --config FILE`: the configuration file (TOML,
scorecl's keys and defaults), ResNet-18 at the configured width and stem,
the projector, two augmented views of each image drawn on the device with
per-sample parameters (random resized crop, flip, colour jitter, grayscale,
blur, solarisation, normalisation), the score network (the same two-level
U-Net with FiLM on log sigma) on both views for the pair weights, the
weighted NT-Xent, the backward pass, the optimizer step, and one DSM step
of the score network with its own Adam. ScoreCL `off` skips the score
network. Differences, stated: the jitter order is fixed (brightness,
contrast, saturation, hue) instead of drawn per sample; LARS is replaced by
SGD with momentum (same memory traffic, no trust ratio); blur is a
separable Gaussian with a per-sample sigma at a fixed 23-tap width scaled to
the image (as torchvision's kernel size 23 at 224 px).

Modes: `eager` (fp32, NCHW) and `amp` (channels_last + autocast: bf16 on
the CPU, fp16 with a GradScaler on CUDA).

    python3 bench/pytorch/bench_train.py --config configs/tiny-simclr.toml --steps 5 [--json]
"""

import argparse
import json
import math
import platform
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import roi_align

DEFAULTS = {
    "method": "simclr",
    "model": {"width": 64, "stem": "cifar", "cifar_padding": 1},
    "simclr": {"temperature": 0.2, "proj_hidden_dim": 2048, "proj_output_dim": 256},
    "data": {"size": 32, "normalize": "cifar"},
    "augment": {
        "crop_scale": [0.08, 1.0], "crop_ratio": [3 / 4, 4 / 3], "flip_prob": 0.5,
        "jitter_prob": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4,
        "hue": 0.1, "gray_prob": 0.2, "blur_prob": 0.0, "blur_sigma": [0.1, 2.0],
        "solarize_prob": 0.0, "solarize_threshold": 0.5,
    },
    "optimizer": {"name": "lars", "lr": 0.3, "weight_decay": 1e-4, "momentum": 0.9},
    "train": {"batch_size": 256},
    "scorecl": {
        "gamma": 1.0, "alpha": 1.0, "w_max": 5.0, "lr": 1e-4, "width": 32, "depth": 1,
        "sigma_max": 1.0, "sigma_min": 0.01, "levels": 10,
    },
}

NORMALIZE = {
    "cifar": ([0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def load_config(path):
    with open(path, "rb") as f:
        user = tomllib.load(f)
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    for k, v in user.items():
        if isinstance(v, dict) and k in cfg:
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    if cfg["method"] != "simclr":
        raise SystemExit(f"{path}: method {cfg['method']!r}: the PyTorch side implements simclr only")
    return cfg


# ---------------------------------------------------------------- models


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + idt)


class ResNet18(nn.Module):
    """torchvision's resnet18 with a width multiplier (64: the standard) and
    the CIFAR stem (3x3 stride 1, no max-pool) or the ImageNet stem."""

    def __init__(self, width, stem, cifar_padding):
        super().__init__()
        w = width
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, w, 3, 1, cifar_padding, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(w)
        layers, cin = [], w
        for i, cout in enumerate([w, 2 * w, 4 * w, 8 * w]):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = cin

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class Film(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.lin = nn.Linear(1, 2 * c)

    def forward(self, h, logsig):
        a, b = self.lin(logsig[:, None]).chunk(2, dim=1)
        return h * a[:, :, None, None] + b[:, :, None, None]


class ScoreBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.film = Film(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)

    def forward(self, x, logsig):
        return x + self.conv2(F.relu(self.film(self.conv1(F.relu(x)), logsig)))


class ScoreNet(nn.Module):
    """scorecl's score network (host/src/nn/score.rs): s(x, sigma) = f(x, sigma)/sigma."""

    def __init__(self, c, depth):
        super().__init__()
        self.conv_in = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.block1 = nn.ModuleList([ScoreBlock(c) for _ in range(depth)])
        self.down = nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False)
        self.block2 = nn.ModuleList([ScoreBlock(2 * c) for _ in range(depth)])
        self.up = nn.Conv2d(2 * c, c, 3, 1, 1, bias=False)
        self.block3 = nn.ModuleList([ScoreBlock(c) for _ in range(depth)])
        self.conv_out = nn.Conv2d(c, 3, 3, 1, 1, bias=False)
        nn.init.zeros_(self.conv_out.weight)

    def forward(self, x, sigma):
        logsig = sigma.log()
        h1 = self.conv_in(x)
        for b in self.block1:
            h1 = b(h1, logsig)
        h2 = self.down(h1)
        for b in self.block2:
            h2 = b(h2, logsig)
        m = self.up(F.interpolate(h2, scale_factor=2, mode="nearest")) + h1
        for b in self.block3:
            m = b(m, logsig)
        return self.conv_out(F.relu(m)) / sigma[:, None, None, None]


# ---------------------------------------------------------- augmentation


def rgb_to_hsv(x):
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    dc = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / dc, (maxc - g) / dc, (maxc - b) / dc
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return h, s, maxc


def hsv_to_rgb(h, s, v):
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v], 1).gather(1, i[:, None]).squeeze(1)
    g = torch.stack([t, v, v, q, p, p], 1).gather(1, i[:, None]).squeeze(1)
    b = torch.stack([p, p, t, v, v, q], 1).gather(1, i[:, None]).squeeze(1)
    return torch.stack([r, g, b], 1)


def gray(x):
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def augment(x, a, size, mean, std, gen):
    """Two-view-ready batch augmentation with per-sample parameters: x is
    (n, 3, H, W) in [0, 1]; returns (normalised views, views in [0, 1])."""
    n, _, H, W = x.shape
    dev = x.device
    u = lambda *s: torch.rand(*s, device=dev, generator=gen)
    # Random resized crop (one draw; torchvision retries up to 10 times).
    area = H * W * (a["crop_scale"][0] + (a["crop_scale"][1] - a["crop_scale"][0]) * u(n))
    lr = math.log(a["crop_ratio"][0]), math.log(a["crop_ratio"][1])
    ratio = torch.exp(lr[0] + (lr[1] - lr[0]) * u(n))
    cw = torch.sqrt(area * ratio).clamp(1, W)
    ch = torch.sqrt(area / ratio).clamp(1, H)
    x0 = u(n) * (W - cw)
    y0 = u(n) * (H - ch)
    boxes = torch.stack([torch.arange(n, device=dev, dtype=x.dtype), x0, y0, x0 + cw, y0 + ch], 1)
    v = roi_align(x, boxes, (size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    flip = u(n) < a["flip_prob"]
    v = torch.where(flip[:, None, None, None], v.flip(3), v)
    # Colour jitter (brightness, contrast, saturation, hue), applied with jitter_prob.
    jit = (u(n) < a["jitter_prob"])[:, None, None, None]
    f = lambda s: (1 - s + 2 * s * u(n))[:, None, None, None]
    j = (v * f(a["brightness"])).clamp(0, 1)
    m = gray(j).mean((1, 2, 3), keepdim=True)
    j = ((j - m) * f(a["contrast"]) + m).clamp(0, 1)
    g = gray(j)
    j = ((j - g) * f(a["saturation"]) + g).clamp(0, 1)
    h, s, val = rgb_to_hsv(j)
    h = (h + (a["hue"] * (2 * u(n) - 1))[:, None, None]) % 1.0
    j = hsv_to_rgb(h, s, val)
    v = torch.where(jit, j, v)
    g = (u(n) < a["gray_prob"])[:, None, None, None]
    v = torch.where(g, gray(v).expand_as(v), v)
    if a["blur_prob"] > 0:
        sig = (a["blur_sigma"][0] + (a["blur_sigma"][1] - a["blur_sigma"][0]) * u(n)) * size / 224
        k = max(3, int(round(23 * size / 224)) | 1)
        t = torch.arange(k, device=dev, dtype=x.dtype) - k // 2
        ker = torch.exp(-0.5 * (t[None] / sig[:, None].clamp_min(1e-3)) ** 2)
        ker = ker / ker.sum(1, keepdim=True)
        b = v.reshape(1, n * 3, size, size)
        kk = ker.repeat_interleave(3, 0)
        b = F.conv2d(F.pad(b, (k // 2, k // 2, 0, 0), mode="reflect"), kk[:, None, None, :], groups=n * 3)
        b = F.conv2d(F.pad(b, (0, 0, k // 2, k // 2), mode="reflect"), kk[:, None, :, None], groups=n * 3)
        blur = (u(n) < a["blur_prob"])[:, None, None, None]
        v = torch.where(blur, b.reshape(n, 3, size, size), v)
    if a["solarize_prob"] > 0:
        sol = (u(n) < a["solarize_prob"])[:, None, None, None]
        v = torch.where(sol & (v >= a["solarize_threshold"]), 1 - v, v)
    return (v - mean) / std, v


# ------------------------------------------------------------------ step


def simclr_loss(z1, z2, w, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / tau
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    per = F.cross_entropy(sim, target, reduction="none")
    return (per * torch.cat([w, w])).mean()


def pair_weights(s1, s2, sc):
    d = s1[0].numel()
    S1 = s1.flatten(1).norm(dim=1) / math.sqrt(d)
    S2 = s2.flatten(1).norm(dim=1) / math.sqrt(d)
    raw = (S1 - S2).abs() ** sc["gamma"]
    mean = raw.mean()
    w = torch.where(mean > 1e-12, raw / mean.clamp_min(1e-12), torch.ones_like(raw))
    w = (1 - sc["alpha"]) + sc["alpha"] * w
    return w.clamp(max=sc["w_max"])


class Bench:
    def __init__(self, cfg, batch, device, amp, scorecl_on):
        self.cfg, self.n, self.device, self.amp, self.on = cfg, batch, device, amp, scorecl_on
        m, s = cfg["model"], cfg["simclr"]
        self.size = cfg["data"]["size"]
        self.encoder = ResNet18(m["width"], m["stem"], m.get("cifar_padding", 1)).to(device)
        feat = self.encoder.feature_dim
        self.projector = nn.Sequential(
            nn.Linear(feat, s["proj_hidden_dim"]), nn.BatchNorm1d(s["proj_hidden_dim"]), nn.ReLU(),
            nn.Linear(s["proj_hidden_dim"], s["proj_output_dim"]),
        ).to(device)
        params = list(self.encoder.parameters()) + list(self.projector.parameters())
        o = cfg["optimizer"]
        if o["name"] == "adam":
            self.opt = torch.optim.Adam(params, lr=o["lr"], weight_decay=o.get("weight_decay", 0.0))
        else:
            self.opt = torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0.9),
                                       weight_decay=o.get("weight_decay", 0.0))
        sc = cfg["scorecl"]
        self.score = ScoreNet(sc["width"], sc["depth"]).to(device) if scorecl_on else None
        if self.score is not None:
            self.score_opt = torch.optim.Adam(self.score.parameters(), lr=sc["lr"])
            k = torch.arange(sc["levels"], dtype=torch.float32)
            self.sigmas = (sc["sigma_max"] * (sc["sigma_min"] / sc["sigma_max"]) ** (k / max(sc["levels"] - 1, 1))).to(device)
            self.sigma_ref = sc.get("sigma_ref", sc["sigma_min"])
        mean, std = NORMALIZE[cfg["data"].get("normalize", "cifar")]
        self.mean = torch.tensor(mean, device=device)[None, :, None, None]
        self.std = torch.tensor(std, device=device)[None, :, None, None]
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(0)
        self.images = torch.rand(batch, 3, self.size, self.size, device=device, generator=self.gen)
        self.scaler = torch.amp.GradScaler("cuda") if (amp and device.type == "cuda") else None
        if amp:
            self.encoder = self.encoder.to(memory_format=torch.channels_last)
            if self.score is not None:
                self.score = self.score.to(memory_format=torch.channels_last)

    def autocast(self):
        if not self.amp:
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def step(self):
        x = self.images
        a = self.cfg["augment"]
        with torch.no_grad():
            x1, r1 = augment(x, a, self.size, self.mean, self.std, self.gen)
            x2, r2 = augment(x, a, self.size, self.mean, self.std, self.gen)
        if self.amp:
            x1 = x1.contiguous(memory_format=torch.channels_last)
            x2 = x2.contiguous(memory_format=torch.channels_last)
        n = self.n
        if self.score is not None:
            with torch.no_grad(), self.autocast():
                sref = torch.full((2 * n,), self.sigma_ref, device=self.device)
                s = self.score(torch.cat([r1, r2]), sref).float()
                w = pair_weights(s[:n], s[n:], self.cfg["scorecl"])
        else:
            w = torch.ones(n, device=self.device)
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            z1 = self.projector(self.encoder(x1))
            z2 = self.projector(self.encoder(x2))
            loss = simclr_loss(z1.float(), z2.float(), w, self.cfg["simclr"]["temperature"])
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        if self.score is not None:
            self.score_opt.zero_grad(set_to_none=True)
            lvl = torch.randint(0, len(self.sigmas), (n,), device=self.device, generator=self.gen)
            sig = self.sigmas[lvl]
            eps = torch.randn(x.shape, device=self.device, generator=self.gen)
            xn = x + sig[:, None, None, None] * eps
            if self.amp:
                xn = xn.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                sc = self.score(xn, sig).float()
                dsm = 0.5 * ((sig[:, None, None, None] * sc + eps) ** 2).flatten(1).sum(1).mean()
            dsm.backward()
            self.score_opt.step()
        return loss


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(cfg, batch, steps, device, amp, on):
    b = Bench(cfg, batch, device, amp, on)
    for _ in range(2):
        b.step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = b.step()
    float(loss.detach())
    sync(device)
    dt = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return {"images_per_s": batch / dt, "step_seconds": dt, "peak_memory_bytes": peak}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--modes", default="eager,amp")
    p.add_argument("--scorecl", default="off,on")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    cfg = load_config(args.config)
    if args.width:
        cfg["model"]["width"] = args.width
    batch = args.batch_size or cfg["train"]["batch_size"]
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    report = {
        "framework": f"torch {torch.__version__}", "device": name, "batch": batch,
        "width": cfg["model"]["width"], "size": cfg["data"]["size"], "steps": args.steps, "results": [],
    }
    # One untimed run of the first row first: the process's first steps run
    # slower than the same steps later (the allocator's thresholds, oneDNN's
    # primitive caches, the thread pool), which would otherwise count
    # against whichever row comes first (about 20 % at CIFAR batch 32).
    first_mode, first_sc = args.modes.split(",")[0], args.scorecl.split(",")[0]
    run(cfg, batch, args.steps, device, first_mode == "amp", first_sc == "on")
    for mode in args.modes.split(","):
        for sc in args.scorecl.split(","):
            r = run(cfg, batch, args.steps, device, mode == "amp", sc == "on")
            r.update({"mode": mode, "scorecl": sc})
            report["results"].append(r)
            if not args.json:
                mem = "" if r["peak_memory_bytes"] is None else f"  peak memory {r['peak_memory_bytes'] / 2**20:.1f} MiB"
                print(f"pytorch {mode:<5} ScoreCL {sc:<3} {r['images_per_s']:9.1f} images/s {r['step_seconds']:8.3f} s/step{mem}", flush=True)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"device: {name}; {report['framework']}")


if __name__ == "__main__":
    main()

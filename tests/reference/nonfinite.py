#!/usr/bin/env python3
"""NaN and infinity through scorecl's activations, as PyTorch treats them.

How to run (the tests only read the committed file):

    pip install torch safetensors
    python3 tests/reference/nonfinite.py   # writes tests/fixtures/nonfinite/cases.safetensors

Every input holds NaN, +inf, -inf, +0, -0 and ordinary values; outputs are
PyTorch's (float32, CPU), read by `host/tests/nonfinite.rs`:

  relu.x, relu.y               F.relu(x)
  relu.g, relu.dx              the gradient of relu at x for upstream g
                               (threshold_backward: g where x > 0 or x is NaN)
  add_relu.a, .b, .y           F.relu(a + b)
  pool.x [1, 2, 5, 5], pool.y, pool.idx
                               F.max_pool2d(x, 3, stride 2, padding 1,
                               return_indices) (ResNet's stem pool); idx as f32
  gemm.a [3, 4], .b [4, 5], .bias [5], .y
                               F.relu(a @ b + bias)
  bn.x [2, 3, 4], .mean [3], .var [3], .gamma [3], .beta [3], .y
                               F.relu(F.batch_norm(x, mean, var, gamma, beta,
                               training=False, eps=1e-5)) (evaluation-mode
                               batch norm with its fused ReLU)
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

NAN, INF = math.nan, math.inf


def main():
    gen = torch.Generator().manual_seed(5)
    t = {}
    x = torch.tensor([NAN, INF, -INF, 0.0, -0.0, 1.5, -2.0, 3e38, -1e-40], dtype=torch.float32)
    t["relu.x"] = x
    t["relu.y"] = F.relu(x)
    xr = x.clone().requires_grad_(True)
    g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    F.relu(xr).backward(g)
    t["relu.g"] = g
    t["relu.dx"] = xr.grad.clone()

    a = torch.tensor([NAN, INF, INF, -INF, 1.0, 2.0, -3.0, 0.5], dtype=torch.float32)
    b = torch.tensor([0.0, -INF, 1.0, 0.0, NAN, -5.0, 1.0, INF], dtype=torch.float32)
    t["add_relu.a"], t["add_relu.b"], t["add_relu.y"] = a, b, F.relu(a + b)

    px = torch.randn(1, 2, 5, 5, generator=gen)
    px[0, 0, 0, 0] = NAN  # corner: in one window
    px[0, 0, 2, 2] = INF  # centre: in four windows
    px[0, 0, 4, 3] = -INF
    px[0, 1, :, :] = -INF  # a plane of -inf: the first in-image position wins
    px[0, 1, 3, 3] = NAN
    px[0, 1, 3, 4] = NAN  # two NaNs in one window: the last one
    y, idx = F.max_pool2d(px, 3, stride=2, padding=1, return_indices=True)
    t["pool.x"], t["pool.y"], t["pool.idx"] = px, y, idx.float()

    ga = torch.randn(3, 4, generator=gen)
    gb = torch.randn(4, 5, generator=gen)
    ga[0, 1] = NAN  # row 0 all NaN
    gb[2, 3] = INF  # column 3: inf or nan
    bias = torch.randn(5, generator=gen)
    bias[4] = -INF
    t["gemm.a"], t["gemm.b"], t["gemm.bias"] = ga, gb, bias
    t["gemm.y"] = F.relu(ga.double() @ gb.double() + bias.double()).float()

    bx = torch.randn(2, 3, 4, generator=gen)
    bx[0, 0, 0], bx[1, 1, 2], bx[0, 2, 3] = NAN, INF, -INF
    mean = torch.randn(3, generator=gen)
    var = torch.rand(3, generator=gen) + 0.5
    gamma = torch.randn(3, generator=gen)
    beta = torch.randn(3, generator=gen)
    t["bn.x"], t["bn.mean"], t["bn.var"], t["bn.gamma"], t["bn.beta"] = bx, mean, var, gamma, beta
    t["bn.y"] = F.relu(F.batch_norm(bx, mean, var, gamma, beta, training=False, eps=1e-5))

    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "fixtures", "nonfinite", "cases.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous().float() for k, v in t.items()}, path, metadata={"format": "pt"})
    print(f"wrote {os.path.normpath(path)}: {len(t)} tensors, torch {torch.__version__}")
    print("relu", t["relu.y"].tolist(), "dx", t["relu.dx"].tolist())
    print("pool", t["pool.y"].tolist(), t["pool.idx"].tolist())


if __name__ == "__main__":
    main()

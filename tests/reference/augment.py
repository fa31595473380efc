#!/usr/bin/env python3
"""Augmentation reference for scorecl's GPU augmentation, made with torchvision.

How to run (the tests only read the committed file):

    pip install torch torchvision safetensors
    python3 tests/reference/augment.py   # writes tests/fixtures/augment/cases.safetensors

For fixed per-sample parameters (the fields of scorecl-core's AugParams) it
applies torchvision's functional ops in float64, in the order of the training
pipeline: resized_crop (bilinear, antialias=True, torchvision's default;
and again with antialias=False), the ColorJitter
adjustments in the given order (brightness, contrast, saturation, hue),
rgb_to_grayscale, gaussian_blur (kernel 2*ceil(3*sigma)+1, reflect padding),
solarize (threshold 0.5), horizontal flip, normalize (CIFAR statistics).

Saved: src [K, 3, 40, 36] in [0, 1]; params [K, 17] as floats (top, left,
height, width, flip, jitter, order0..3, brightness, contrast, saturation, hue,
gray, blur_sigma, solarize); out [K, 3, 10, 9] in [0, 1] and
outn [K, 3, 10, 9] normalised (antialias=True); out_plain and outn_plain
(antialias=False). The crops cover upscaling, mild downscaling, exact 2x and
4x downscaling, and one axis up with the other down.
"""

import math
import os

import torch
import torchvision.transforms.functional as F
from safetensors.torch import save_file

MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.247, 0.243, 0.261]
OUT = (10, 9)


def apply(img, p, antialias):
    top, left, h, w = (int(v) for v in p[:4])
    x = F.resized_crop(
        img, top, left, h, w, list(OUT), interpolation=F.InterpolationMode.BILINEAR, antialias=antialias
    )
    if p[5] > 0:
        for op in (int(v) for v in p[6:10]):
            if op == 0:
                x = F.adjust_brightness(x, float(p[10]))
            elif op == 1:
                x = F.adjust_contrast(x, float(p[11]))
            elif op == 2:
                x = F.adjust_saturation(x, float(p[12]))
            else:
                x = F.adjust_hue(x, float(p[13]))
    if p[14] > 0:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
    sigma = float(p[15])
    if sigma > 0:
        k = 2 * math.ceil(3 * sigma) + 1
        x = F.gaussian_blur(x, [k, k], [sigma, sigma])
    if p[16] > 0:
        x = F.solarize(x, 0.5)
    if p[4] > 0:
        x = F.hflip(x)
    return x, F.normalize(x, MEAN, STD)


def main():
    gen = torch.Generator().manual_seed(11)
    src_hw = (40, 36)
    rows = [
        # top left h  w  flip jitter order      b     c     s     hue   gray blur  solar
        [0, 0, 16, 12, 0, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 0, 0.0, 0],
        [2, 1, 9, 7, 1, 1, 0, 1, 2, 3, 1.3, 0.7, 1.2, 0.05, 0, 0.0, 0],
        [5, 3, 11, 6, 0, 1, 3, 2, 1, 0, 0.8, 1.4, 0.6, -0.08, 0, 0.0, 0],
        [0, 4, 7, 8, 1, 1, 1, 0, 3, 2, 1.1, 0.9, 1.3, 0.3, 0, 0.0, 0],
        [3, 0, 13, 12, 0, 1, 2, 3, 0, 1, 0.6, 1.2, 0.0, -0.45, 1, 0.0, 0],
        [1, 2, 12, 9, 0, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 0, 1.3, 0],
        [4, 1, 8, 10, 1, 1, 0, 2, 1, 3, 1.2, 0.8, 1.1, 0.1, 0, 0.7, 1],
        [0, 0, 16, 12, 0, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 1, 0.4, 1],
        # 4x down (40x36 -> 10x9), 2x down, mixed, one axis up and one down
        [0, 0, 40, 36, 0, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 0, 0.0, 0],
        [0, 0, 40, 36, 1, 1, 2, 0, 3, 1, 1.2, 0.7, 1.3, 0.2, 0, 0.0, 0],
        [4, 2, 20, 18, 0, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 0, 0.0, 0],
        [10, 6, 20, 18, 1, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 1, 0.9, 0],
        [3, 5, 31, 13, 0, 1, 1, 3, 0, 2, 0.9, 1.1, 0.8, -0.2, 0, 0.0, 0],
        [1, 1, 6, 30, 1, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 0, 0.0, 0],
    ]
    k = len(rows)
    src = torch.rand(k, 3, *src_hw, generator=gen).float()
    params = torch.tensor(rows, dtype=torch.float64)
    tensors = {"src": src, "params": params.float()}
    for suffix, antialias in (("", True), ("_plain", False)):
        outs, outns = [], []
        for i in range(k):
            o, on = apply(src[i].double(), params[i], antialias)
            outs.append(o)
            outns.append(on)
        tensors["out" + suffix] = torch.stack(outs).float()
        tensors["outn" + suffix] = torch.stack(outns).float()
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "fixtures", "augment", "cases.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({n: t.contiguous() for n, t in tensors.items()}, path, metadata={"format": "pt"})
    print(f"wrote {os.path.normpath(path)}: {k} cases, torchvision")


if __name__ == "__main__":
    main()

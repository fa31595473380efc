#!/usr/bin/env python3
"""Evaluation-view fidelity reference: features of scorecl's initial encoder on
real CIFAR-10 images, seen as torchvision users evaluate them.

How to run (the tests only read the committed file):

    pip install torch torchvision safetensors
    cargo run --release -p scorecl-host --bin scorecl -- \
        encoder init --width 8 --stem cifar --seed 0 --out /tmp/init_w8.safetensors
    python3 tests/reference/eval_view.py --encoder /tmp/init_w8.safetensors \
        --data ../shared/data/cifar10-subset
    # writes tests/fixtures/eval_view/cifar10_w8.safetensors

The encoder is scorecl's own initialisation of ResNet-18 at width 8 with the
CIFAR stem (seed 0), exported by `scorecl encoder init` and loaded into
torchvision's ResNet (fc removed) with load_state_dict(strict=True). The images
are the first 32 records of the subset's `test_batch.bin` (CIFAR-10's binary
layout). Each view size s in 8, 16, 32 is torchvision's evaluation transform of
a CIFAR image, in float64:

    ToTensor -> Resize((s, s), antialias=True) -> Normalize(CIFAR mean, std)

and the features are the global-average-pooled output of the encoder in eval
mode (BatchNorm with its running statistics).

Saved: images [32, 3, 32, 32] uint8; labels [32] int64;
features.<s> [32, 64] float32.
"""

import argparse
import os

import torch
import torch.nn as nn
import torchvision.transforms.functional as F
from safetensors.torch import load_file, save_file

from resnet import ResNetW

MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.247, 0.243, 0.261]
SIZES = (8, 16, 32)
COUNT = 32


def read_cifar(path, count):
    raw = open(path, "rb").read()
    rec = 1 + 3 * 32 * 32
    if len(raw) < rec * count:
        raise SystemExit(f"{path}: {len(raw)} bytes, fewer than {count} records")
    data = torch.frombuffer(bytearray(raw[: rec * count]), dtype=torch.uint8).view(count, rec)
    return data[:, 1:].reshape(count, 3, 32, 32).clone(), data[:, 0].long()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", required=True, help="scorecl encoder init --width 8 --seed 0 output")
    ap.add_argument("--data", required=True, help="a CIFAR-10 binary directory (test_batch.bin)")
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "eval_view", "cifar10_w8.safetensors"))
    args = ap.parse_args()
    images, labels = read_cifar(os.path.join(args.data, "test_batch.bin"), COUNT)
    model = ResNetW(8, "cifar")
    model.load_state_dict(load_file(args.encoder), strict=True)
    model = model.double().eval()
    tensors = {"images": images, "labels": labels}
    x = images.double() / 255.0
    with torch.no_grad():
        for s in SIZES:
            v = F.resize(x, [s, s], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
            v = F.normalize(v, MEAN, STD)
            tensors[f"features.{s}"] = model(v).float()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, args.out, metadata={"format": "pt"})
    print(f"wrote {os.path.normpath(args.out)}: {COUNT} images, views {SIZES}, torch {torch.__version__}")


if __name__ == "__main__":
    main()

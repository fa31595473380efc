#!/usr/bin/env python3
"""ResNet-18 and ResNet-50 references for scorecl's encoder, made with torchvision.

How to run (the tests only read the committed files):

    pip install torch torchvision safetensors
    python3 tests/reference/resnet.py                 # writes tests/fixtures/resnet/*.safetensors
    python3 tests/reference/resnet.py --only resnet50_cifar_w8   # one of them
    python3 tests/reference/resnet.py --check-checkpoint model.safetensors [--stem cifar]
            [--arch resnet18|resnet50] [--width 64]
        # loads a checkpoint written by `scorecl encoder init` into torchvision's
        # resnet18 or resnet50 (fc removed; at width 64 torchvision's own model,
        # else its blocks at that width) with load_state_dict(strict=True) and runs it

Each fixture is built from torchvision's own BasicBlock and ResNet._make_layer
at base width 8 (widths 8, 16, 32, 64; features 64-d), with random weights,
random batch-norm affine parameters and running statistics, a batch of 4 RGB
images (32x32 for the CIFAR stem, 64x64 for the ImageNet stem). The ResNet-50
fixture uses torchvision's Bottleneck blocks ([3, 4, 6, 3], expansion 4,
the stride on the 3x3 convolution as torchvision's v1.5) at the same base
width (features 256-d). It runs one
training-mode forward and the backward of sum(features * R) in float64 from the
stored float32 values, and saves (float32 unless noted):

  param.<name>   every state-dict entry before the forward (num_batches_tracked: int64)
  input, R       the images and the projection of the features
  features       the forward's output (N x 64)
  grad.<name>    the gradient of every parameter; grad.input the input's
  state.<name>   running_mean / running_var / num_batches_tracked after the forward
"""

import argparse
import os

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50


class ResNetW(ResNet):
    """torchvision's ResNet-18 (or -50) with base width `width` and a choice of stem."""

    def __init__(self, width, stem, cifar_padding=1, arch="resnet18"):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # BasicBlock's own check; not the channel width
        if stem == "cifar":
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=cifar_padding, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        block, counts = (BasicBlock, [2, 2, 2, 2]) if arch == "resnet18" else (Bottleneck, [3, 4, 6, 3])
        self.layer1 = self._make_layer(block, width, counts[0])
        self.layer2 = self._make_layer(block, 2 * width, counts[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, counts[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, counts[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()


def randomise(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(3)


def fixture(stem, size, out, seed, arch="resnet18"):
    gen = torch.Generator().manual_seed(seed)
    model = ResNetW(8, stem, arch=arch)
    randomise(model, gen)
    feat = 64 if arch == "resnet18" else 256
    x = torch.randn(4, 3, size, size, generator=gen)
    r = torch.randn(4, feat, generator=gen)
    tensors = {f"param.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tensors["input"] = x.clone()
    tensors["R"] = r.clone()
    model = model.double().train()
    xd = x.double().requires_grad_(True)
    feats = model(xd)
    (feats * r.double()).sum().backward()
    tensors["features"] = feats.detach().float()
    tensors["grad.input"] = xd.grad.float()
    for name, p in model.named_parameters():
        tensors[f"grad.{name}"] = p.grad.float()
    for name, b in model.named_buffers():
        tensors[f"state.{name}"] = b.detach().float() if b.is_floating_point() else b.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, out, metadata={"format": "pt"})
    print(f"wrote {out}: {len(tensors)} tensors, torch {torch.__version__}")


def check_checkpoint(path, stem, arch="resnet18", width=64):
    """Loads a scorecl checkpoint into torchvision's resnet18 or resnet50 (fc removed)."""
    model = (resnet18() if arch == "resnet18" else resnet50()) if width == 64 else ResNetW(width, stem, arch=arch)
    if stem == "cifar" and width == 64:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    state = load_file(path)
    model.load_state_dict(state, strict=True)
    model.eval()
    size = 32 if stem == "cifar" else 64
    with torch.no_grad():
        feats = model(torch.zeros(2, 3, size, size))
    print(f"{path}: {len(state)} tensors loaded into torchvision {arch} at width {width} (strict); "
          f"features {tuple(feats.shape)}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "resnet"))
    ap.add_argument("--check-checkpoint")
    ap.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"])
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--only", help="write only this fixture (its file stem)")
    args = ap.parse_args()
    if args.check_checkpoint:
        check_checkpoint(args.check_checkpoint, args.stem, args.arch, args.width)
        return
    os.makedirs(args.out, exist_ok=True)
    for name, stem, size, seed, arch in [
        ("cifar_w8", "cifar", 32, 1, "resnet18"),
        ("imagenet_w8", "imagenet", 64, 2, "resnet18"),
        ("resnet50_cifar_w8", "cifar", 32, 3, "resnet50"),
    ]:
        if args.only in (None, name):
            fixture(stem, size, os.path.join(args.out, f"{name}.safetensors"), seed, arch)


if __name__ == "__main__":
    main()

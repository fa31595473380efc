#!/usr/bin/env python3
"""On-paper scaling of data-parallel ScoreCL training (docs/SCALING.md).

Per-step communication of K ranks against one rank's compute time, from
stated assumptions only (no measurement): every figure below is computed
here from the parameter counts of scorecl's models, the FLOPs of a step
and the link's bandwidth and latency given on the command line.

    python3 bench/scaling.py            # the tables of docs/SCALING.md
"""
import argparse

# Parameter counts, exact: the encoder's is what `scorecl encoder init
# --width 64` writes (running statistics not counted), torchvision's
# resnet18 without fc and with the 3x3 CIFAR stem; score_net(8) = 9,776 is
# what the main job's checkpoint holds.
RESNET18_CIFAR = 11_168_832
SIMCLR_PROJECTOR = 512 * 2048 + 2048 + 2 * 2048 + 2048 * 256 + 256  # Linear, BN, Linear


def score_net(w):
    """ScoreNet(width w, depth 1): 144 w^2 convolution weights + FiLM + in/out convs."""
    return 144 * w * w + 70 * w


# Batch-norm layers whose statistics a synced BN all-reduces, per forward
# of one view: ResNet-18 (stem 1, blocks 16, downsample 3) + the projector's.
BN_LAYERS = [64] + [64] * 4 + [128] * 5 + [256] * 5 + [512] * 5 + [2048]


def ring_bytes(k, size):
    """Bytes each rank sends in a ring all-reduce of `size` bytes."""
    return 2 * (k - 1) / k * size


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latency-us", type=float, default=5.0,
                   help="per-message latency of the fabric and MPI stack (µs)")
    p.add_argument("--step-gflop-per-image", type=float, default=9.2,
                   help="GFLOP of one training step per image (CIFAR ResNet-18 + ScoreCL)")
    p.add_argument("--global-batch", type=int, nargs="+", default=[256, 4096])
    args = p.parse_args()
    alpha = args.latency_us * 1e-6

    params = RESNET18_CIFAR + SIMCLR_PROJECTOR + score_net(32)
    grad = 4 * params
    print(f"parameters: encoder {RESNET18_CIFAR:,}, projector {SIMCLR_PROJECTOR:,}, "
          f"score network {score_net(32):,}; all {params:,} = {grad / 1e6:.1f} MB of f32 gradients")
    print()
    print("| ranks K | sent per rank | 100 Gb/s | 400 Gb/s | ring latency | tree latency | synced BN per step |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k in (8, 64, 512):
        b = ring_bytes(k, grad)
        ring_lat = 2 * (k - 1) * alpha
        tree_lat = 2 * (k.bit_length() - 1) * alpha
        # Forward and backward of each BN layer, two views: one small
        # all-reduce each, latency-bound (a tree), serialised with compute.
        bn = 2 * 2 * len(BN_LAYERS) * tree_lat
        print(f"| {k} | {b / 1e6:.1f} MB | {b / 12.5e9 * 1e3:.1f} ms | {b / 50e9 * 1e3:.1f} ms | "
              f"{ring_lat * 1e3:.2f} ms | {tree_lat * 1e3:.3f} ms | {bn * 1e3:.1f} ms |")
    print()
    print("| global batch | ranks K | images per rank | compute at 25 TFLOP/s | at 150 TFLOP/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for gb in args.global_batch:
        for k in (8, 64, 512):
            per = gb / k
            fl = per * args.step_gflop_per_image * 1e9
            cell = lambda tf: f"{fl / (tf * 1e12) * 1e3:.1f} ms" if per >= 1 else "under one image"
            print(f"| {gb} | {k} | {per:g} | {cell(25)} | {cell(150)} |")


if __name__ == "__main__":
    main()

"""PyTorch's fp32 3×3 convolutions at the shapes `scorecl bench conv` lists
(ResNet-18's four stages, CIFAR stem): milliseconds of the forward and of
the backward (weight and input gradients), median after warm-up, NCHW
(oneDNN on CPUs).

    python3 bench/pytorch/bench_conv.py [--width 64] [--batch 64] [--size 32] [--threads 2] [--json]
"""

import argparse
import json
import time

import torch


def shapes(width, batch, size):
    """(name, cin, cout, side, stride) as `scorecl bench conv` builds them."""
    out, side = [], size
    for stage in range(4):
        c = width << stage
        if stage > 0:
            out.append((f"layer{stage + 1} stride 2", c // 2, c, side, 2))
            side = (side + 1) // 2
        out.append((f"layer{stage + 1} stride 1", c, c, side, 1))
    return out


def median_ms(fn, seconds):
    for _ in range(2):
        fn()
    times, t0 = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - t0 < seconds and len(times) < 15):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return 1e3 * times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for name, cin, cout, side, stride in shapes(a.width, a.batch, a.size):
        x = torch.randn(a.batch, cin, side, side, requires_grad=True)
        conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        with torch.no_grad():
            y = conv(x)
        dy = torch.randn_like(y)

        def forward():
            with torch.no_grad():
                conv(x)

        def backward():
            # The backward alone: the graph is rebuilt outside the timing.
            y = conv(x)
            t = time.perf_counter()
            y.backward(dy)
            return time.perf_counter() - t

        fwd = median_ms(forward, a.seconds)
        bwd_times = []
        for _ in range(2):
            backward()
        t0 = time.perf_counter()
        while len(bwd_times) < 3 or (time.perf_counter() - t0 < a.seconds and len(bwd_times) < 15):
            bwd_times.append(backward())
        bwd_times.sort()
        bwd = 1e3 * bwd_times[len(bwd_times) // 2]
        gflop = 2 * a.batch * cout * ((side - 1) // stride + 1) ** 2 * cin * 9 / 1e9
        rows.append(dict(shape=name, cin=cin, cout=cout, side=side, stride=stride,
                         forward_ms=fwd, backward_ms=bwd,
                         forward_gflops=gflop / fwd * 1e3, backward_gflops=2 * gflop / bwd * 1e3))
    if a.json:
        print(json.dumps(dict(torch=torch.__version__, threads=torch.get_num_threads(), conv=rows)))
        return
    print(f"PyTorch {torch.__version__} conv2d fp32, batch {a.batch}, {torch.get_num_threads()} threads")
    print(f"{'shape':<18} {'C_in':>5} {'C_out':>5} {'side':>5} {'fwd ms':>10} {'GFLOP/s':>9} {'bwd ms':>10} {'GFLOP/s':>9}")
    for r in rows:
        print(f"{r['shape']:<18} {r['cin']:>5} {r['cout']:>5} {r['side']:>5} {r['forward_ms']:>10.2f} "
              f"{r['forward_gflops']:>9.1f} {r['backward_ms']:>10.2f} {r['backward_gflops']:>9.1f}")


if __name__ == "__main__":
    main()

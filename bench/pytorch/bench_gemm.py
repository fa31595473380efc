"""PyTorch's fp32 matrix product at the sizes `scorecl bench gemm` uses,
GFLOP/s after warm-up (TF32 off: strict fp32, as scorecl's GEMM).

    python3 bench/pytorch/bench_gemm.py [--sizes 1024,4096] [--shapes 32768x64x576,...] [--json]

--shapes adds M x N x K products (A M x K times B K x N), e.g. the ResNet-18
convolution shapes `scorecl bench gemm` lists.
"""

import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1024,2048,4096")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--shapes", default="")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    shapes = [(s, s, s) for s in (int(x) for x in a.sizes.split(",") if x)]
    shapes += [tuple(int(v) for v in t.split("x")) for t in a.shapes.split(",") if t]
    for m, n, k in shapes:
        s = m
        x = torch.randn(m, k, device=dev)
        y = torch.randn(k, n, device=dev)
        for _ in range(3):
            x @ y
        sync()
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < a.seconds:
            x @ y
            reps += 1
            if dev.type == "cuda" and reps % 10:
                continue
            sync()
        sync()
        dt = (time.perf_counter() - t0) / reps
        rows.append({"m": m, "n": n, "k": k, "ms": dt * 1e3, "gflops": 2 * m * n * k / dt / 1e9})
        if not a.json:
            print(f"torch fp32 matmul {m}x{n}x{k}: {dt * 1e3:9.3f} ms {rows[-1]['gflops']:10.1f} GFLOP/s")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    if a.json:
        print(json.dumps({"framework": f"torch {torch.__version__}", "device": name, "results": rows}))
    else:
        print(f"device: {name}")


if __name__ == "__main__":
    main()

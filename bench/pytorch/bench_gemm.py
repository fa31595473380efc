"""PyTorch's fp32 matrix product at the sizes `scorecl bench gemm` uses,
GFLOP/s after warm-up (TF32 off: strict fp32, as scorecl's GEMM).

    python3 bench/pytorch/bench_gemm.py [--sizes 1024,4096] [--json]
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
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows = []
    for s in [int(x) for x in a.sizes.split(",")]:
        x = torch.randn(s, s, device=dev)
        y = torch.randn(s, s, device=dev)
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
        rows.append({"size": s, "ms": dt * 1e3, "gflops": 2 * s**3 / dt / 1e9})
        if not a.json:
            print(f"torch fp32 matmul {s}: {dt * 1e3:9.3f} ms {rows[-1]['gflops']:10.1f} GFLOP/s")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    if a.json:
        print(json.dumps({"framework": f"torch {torch.__version__}", "device": name, "results": rows}))
    else:
        print(f"device: {name}")


if __name__ == "__main__":
    main()

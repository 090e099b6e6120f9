"""distill benchmarks: batched block training against a plain per-block torch loop, same process.

    python benchmarks/bench_distill.py [--quick] [--device auto|cpu|cuda] [--threads N] [--sweep]

Training throughput in block-samples per second (blocks x batch x steps / seconds) for B residual
MLP blocks (width, depth, float32, Adam):

* batched:  :class:`distill.students.BlockStack`, all B blocks in one ``baddbmm`` per layer;
* baseline: B separate ``torch.nn.Sequential`` MLPs, each with its own Adam, trained one after
  the other (the plain way to distil a residual student segment by segment).

Both see the same data sizes; times are warm (one warm-up step).  Also the exact teacher's
throughput (trajectory-steps x samples per second, float64 RK4) and, with ``--sweep``, the wall
time of the default full sweep on ring8 (steps 1,2,4,8,16; four grids; three seeds).
Runs on the CPU and, when one is visible, on the GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


import torch  # noqa: E402

from flowcert.distill.students import BlockStack, train_segments  # noqa: E402


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def batched(B, d, width, depth, n, batch, iters, device):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(B, n, d, generator=g).to(device)
    Y = X + 0.1 * torch.sin(3 * X)
    stack = BlockStack.init(B, d, width, depth, g, torch.float32, device)
    train_segments(stack, X, Y, iters=2, batch=batch, lr=1e-3, generator=g)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    train_segments(stack, X, Y, iters=iters, batch=batch, lr=1e-3, generator=g)
    sync(device)
    return B * batch * iters / (time.perf_counter() - t0)


def baseline(B, d, width, depth, n, batch, iters, device):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(B, n, d, generator=g).to(device)
    Y = X + 0.1 * torch.sin(3 * X)
    nets = []
    for _ in range(B):
        layers, fi = [], d
        for _ in range(depth):
            layers += [torch.nn.Linear(fi, width), torch.nn.SiLU()]
            fi = width
        layers.append(torch.nn.Linear(fi, d))
        nets.append(torch.nn.Sequential(*layers).to(device))

    def train(i, steps):
        opt = torch.optim.Adam(nets[i].parameters(), lr=1e-3)
        for _ in range(steps):
            idx = torch.randint(n, (batch,), generator=g).to(device)
            loss = ((nets[i](X[i, idx]) - (Y[i, idx] - X[i, idx])) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    train(0, 2)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    for i in range(B):
        train(i, iters)
    sync(device)
    return B * batch * iters / (time.perf_counter() - t0)


def teacher_rate(device, n, quick):
    from flowcert.numcore.marginal import sample
    from flowcert.numcore.mixture import builtin

    from flowcert.distill.teacher import Teacher

    out = {}
    for name in ("ring8", "modes8d"):
        mix = builtin(name)
        x = sample(mix, 5.0, n, 0)
        teacher = Teacher(mix, device)
        t1 = 0.5 if quick else 1e-3
        teacher.flow(x[:8], 5.0, 4.0)
        sync(device)
        t0 = time.perf_counter()
        teacher.flow(x, 5.0, t1)
        sync(device)
        dt = time.perf_counter() - t0
        r0, h, m = teacher._substeps(5.0, t1)
        out[name] = (m * n / dt, m, dt)
    return out


def full_sweep_wall(device):
    from flowcert.numcore.mixture import builtin

    from flowcert.distill.config import build_config
    from flowcert.distill.validation import run

    cfg = build_config(["ring8"], [builtin("ring8").to_spec() | {"name": "ring8"}], preset="full", device=device)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run(cfg, os.path.join(tmp, "run"), progress=True, plots=False)
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--sweep", action="store_true", help="also time the default full sweep on ring8")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default; sweep jobs use 1)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and args.device != "cpu" else [])
    if args.device == "cuda":
        devices = ["cuda"]
    iters = 50 if args.quick else 200
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print("device  B  width depth batch  batched [block-samples/s]  per-block loop  ratio")
    for device in devices:
        for B, width, depth, batch in ((8, 64, 2, 1024), (31, 64, 2, 1024), (8, 256, 3, 1024)):
            if device == "cpu" and args.quick and width > 64:
                continue
            a = batched(B, 2, width, depth, 8192, batch, iters, device)
            b = baseline(B, 2, width, depth, 8192, batch, iters, device)
            print(f"{device:6s} {B:3d} {width:5d} {depth:5d} {batch:5d}  {a:25.3e}  {b:14.3e}  {a / b:5.2f}")
    for device in devices:
        for name, (rate, steps, dt) in teacher_rate(device, 2048 if args.quick else 8192, args.quick).items():
            print(f"teacher {device} {name}: {rate:.3e} sample-steps/s ({steps} RK4 steps, {dt:.2f} s)")
    if args.sweep:
        for device in devices:
            print(f"full sweep ring8 on {device}: {full_sweep_wall(device):.1f} s")


if __name__ == "__main__":
    main()

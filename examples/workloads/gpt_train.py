"""A small GPT-style transformer trained on random tokens: the reference workload for captures and overhead.

6 layers, d_model 512, context 256, batch 16, fp16 autocast, AdamW — the configuration the overhead numbers
in docs/benchmarks.md use. ``gpufl.scope`` marks forward / backward / optimizer inside each step.

    python examples/workloads/gpt_train.py --steps 30 --mode gpufl --log-dir ./gpufl-logs
    --mode none | gpufl | torch-profiler     (one mode per process: the overhead bench starts fresh ones)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class MiniGPT(nn.Module):
    def __init__(
        self, vocab: int = 8192, d: int = 512, layers: int = 6, heads: int = 8, ctx: int = 256
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.register_buffer("mask", torch.triu(torch.ones(ctx, ctx, dtype=torch.bool), 1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for b in self.blocks:
            x = b(x, self.mask[:t, :t])
        return self.head(self.ln(x))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--mode", choices=["none", "gpufl", "gpufl-stacks", "torch-profiler"], default="gpufl")
    ap.add_argument("--log-dir", default="./gpufl-logs")
    ap.add_argument("--app-name", default="gpt_train")
    ap.add_argument("--result", help="write per-step timings here as JSON")
    args = ap.parse_args()

    gpufl = None
    if args.mode.startswith("gpufl"):
        import gpufl as _g

        gpufl = _g
        gpufl.init(app_name=args.app_name, log_dir=args.log_dir, stacks=args.mode == "gpufl-stacks")

    def scope(name: str) -> contextlib.AbstractContextManager[object]:
        return gpufl.scope(name) if gpufl else contextlib.nullcontext()

    torch.manual_seed(0)
    dev = "cuda"
    model = MiniGPT().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scaler = torch.amp.GradScaler()
    data = torch.randint(0, 8192, (16, 257), device=dev)

    prof = None
    if args.mode == "torch-profiler":
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
        prof.__enter__()

    times = []
    for step in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with scope("step"):
            with scope("forward"), torch.autocast("cuda", dtype=torch.float16):
                logits = model(data[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[:, 1:].reshape(-1))
            with scope("backward"):
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            with scope("optimizer"):
                scaler.step(opt)
                scaler.update()
        torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)

    t_exit = time.perf_counter()
    if prof is not None:
        prof.__exit__(None, None, None)
        prof.key_averages()  # the post-processing a user pays for to see anything
    if gpufl is not None:
        gpufl.shutdown()
    exit_s = time.perf_counter() - t_exit
    times.sort()
    res = {
        "mode": args.mode,
        "steps": len(times),
        "median_ms": 1000 * times[len(times) // 2],
        "min_ms": 1000 * times[0],
        "max_ms": 1000 * times[-1],
        "exit_s": exit_s,
        "loss": float(loss.detach()),
    }
    print(json.dumps(res))
    if args.result:
        with open(args.result, "w") as f:
            json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

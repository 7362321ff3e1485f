"""A small GPT-style transformer trained on random tokens: the reference workload for captures and overhead.

6 layers, d_model 512, context 256, batch 16, fp16 autocast, AdamW — the configuration the overhead numbers
in docs/benchmarks.md use. ``gpufl.scope`` marks forward / backward / optimizer inside each step.
``--d-model 2048 --layers 8 --batch 64`` makes it GPU-bound (bench/client_overhead.py ``--workload gpt-big``).
``--layers`` and ``--dtype`` make the known changes the committed diff captures differ by
(examples/captures/diff_*: a layer removed, bf16 instead of fp16).

    python examples/workloads/gpt_train.py --steps 30 --mode gpufl --log-dir ./gpufl-logs
    --mode: see harness.py (one mode per process: the overhead bench starts fresh ones)
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from harness import Run, arguments


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
    def options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--layers", type=int, default=6, help="transformer blocks (default 6)")
        ap.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16", help="autocast dtype")
        ap.add_argument("--d-model", type=int, default=512, help="model width (default 512)")
        ap.add_argument("--batch", type=int, default=16, help="sequences per step (default 16)")

    args = arguments(__doc__ or "", steps=100, warmup=10, app="gpt_train", extra=options)
    dtype = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    run = Run(args)
    torch.manual_seed(0)
    dev = "cuda"
    model = MiniGPT(layers=args.layers, d=args.d_model, heads=max(8, args.d_model // 128)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    # bf16 needs no loss scaling; the scaler's kernels stay in both so the dtype is the one change
    scaler = torch.amp.GradScaler()
    data = torch.randint(0, 8192, (args.batch, 257), device=dev)

    loss = torch.zeros(())
    for _ in run.steps(torch.cuda.synchronize):
        with run.scope("step"):
            with run.scope("forward"), torch.autocast("cuda", dtype=dtype):
                logits = model(data[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[:, 1:].reshape(-1))
            with run.scope("backward"):
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
            with run.scope("optimizer"):
                scaler.step(opt)
                scaler.update()
    run.finish(loss=float(loss.detach()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

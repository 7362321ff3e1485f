"""Memory traffic: host↔device copies from pageable and pinned memory, device copies and memsets."""

from __future__ import annotations

import argparse

import torch

import gpufl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log-dir", default="./gpufl-logs")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    gpufl.init(app_name="memcpy_heavy", log_dir=args.log_dir)
    sizes = [1 << 16, 1 << 20, 16 << 20, 64 << 20]
    for r in range(args.rounds):
        for n in sizes:
            with gpufl.scope("pageable"):
                h = torch.empty(n // 4, dtype=torch.float32)
                h.fill_(r)
                d = h.to("cuda")
                back = d.cpu()
            with gpufl.scope("pinned"):
                hp = torch.empty(n // 4, dtype=torch.float32, pin_memory=True)
                hp.fill_(r)
                dp = hp.to("cuda", non_blocking=True)
                back_p = torch.empty_like(hp, pin_memory=True)
                back_p.copy_(dp, non_blocking=True)
            with gpufl.scope("device"):
                d2 = torch.empty_like(d)
                d2.copy_(d)
                d2.zero_()
            torch.cuda.synchronize()
            assert float(back[0]) == r and float(back_p[0]) == r
    gpufl.shutdown()


if __name__ == "__main__":
    main()

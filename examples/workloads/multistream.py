"""Concurrency: several CUDA streams, several launching threads, and a captured CUDA graph replayed."""

from __future__ import annotations

import argparse
import threading

import torch

import gpufl


def worker(idx: int, iters: int) -> None:
    s = torch.cuda.Stream()
    a = torch.randn(1024, 1024, device="cuda")
    with torch.cuda.stream(s), gpufl.scope(f"thread{idx}"):
        for _ in range(iters):
            a = torch.relu(a @ a) / 1024
    s.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log-dir", default="./gpufl-logs")
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    gpufl.init(app_name="multistream", log_dir=args.log_dir)
    threads = [threading.Thread(target=worker, args=(i, args.iters)) for i in range(4)]
    with gpufl.scope("streams"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # CUDA graph: capture once, replay several times.
    x = torch.randn(512, 512, device="cuda")
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for _ in range(3):  # warm up on the side stream as torch requires
            y = torch.tanh(x @ x)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        y = torch.tanh(x @ x)
    with gpufl.scope("graph_replay"):
        for _ in range(10):
            g.replay()
    torch.cuda.synchronize()
    assert y.shape == (512, 512)
    gpufl.shutdown()


if __name__ == "__main__":
    main()

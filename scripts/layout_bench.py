"""Forward+backward time of the default CNN on one batch in row-major and channels-last memory layout.

    python scripts/layout_bench.py --threads 2 --batch 256 --shape 1,28,28

Why `data.canonical` loads image batches channels-last (docs/benchmarks.md, "Memory layout").
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from activeadv.data import canonical
from activeadv.networks import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--shape", default="1,28,28", help="C,H,W")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = tuple(int(v) for v in args.shape.split(","))
    model = build_network(shape, 10).to(args.device)
    x = torch.rand(args.batch, *shape, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    # canonical(): channels-last with explicit strides, also on a size-1 channel axis (where
    # x.contiguous(memory_format=torch.channels_last) leaves row-major strides)
    layouts = {"row-major": x.contiguous(), "channels-last": canonical(x)}
    print({name: tuple(b.stride()) for name, b in layouts.items()})
    times: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.repeats):  # alternate, so drift hits both
        for name, batch in layouts.items():
            for _ in range(2):
                F.cross_entropy(model(batch), y).backward()
            if args.device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(10):
                F.cross_entropy(model(batch), y).backward()
            if args.device != "cpu":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / 10 * 1000)
    base = statistics.median(times["row-major"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<14} {med:7.1f} ms (min {min(values):.1f}, max {max(values):.1f})  x{base / med:.2f}")


if __name__ == "__main__":
    main()

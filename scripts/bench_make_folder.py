"""Write an image-folder pool of N MNIST-derived PNGs (one sub-folder per class) for `activeadv bench rank`.

MNIST has 70,000 images; copies beyond that are shifted by one pixel so that
every file has distinct content.  Write it outside the repository:

    python scripts/bench_make_folder.py ../shared/data/mnist /tmp/mnist200k --count 200000

``--npz FILE`` also writes the same images, in the folder pool's item order, as one
float32 array (``x``, ``y``): the in-memory baseline of the streamed-folder benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from activeadv.data import _find, read_idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist", type=Path, help="folder with the MNIST IDX files")
    parser.add_argument("out", type=Path, help="output folder (created; outside the repository)")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--npz", type=Path, default=None, help="also write the pool as one float32 .npz here")
    args = parser.parse_args()
    images, labels = [], []
    for stem in ("train", "t10k"):
        images.append(read_idx(_find(args.mnist, f"{stem}-images-idx3-ubyte")))
        labels.append(read_idx(_find(args.mnist, f"{stem}-labels-idx1-ubyte")))
    x, y = np.concatenate(images), np.concatenate(labels)
    for c in range(10):
        (args.out / str(c)).mkdir(parents=True, exist_ok=True)
    shifts = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1)]
    for i in range(args.count):
        src, copy = i % len(x), i // len(x)
        img = np.roll(x[src], shifts[copy % len(shifts)], axis=(0, 1)) if copy else x[src]
        Image.fromarray(img).save(args.out / str(int(y[src])) / f"{i:06d}.png")
    if args.npz:
        write_npz(args.out, args.npz)


def write_npz(folder: Path, out: Path, chunk: int = 4096) -> None:
    """The folder pool as one float32 tensor, read through ``load_dataset`` so pixels and order match."""
    from activeadv.data import load_dataset

    pool = load_dataset(f"folder:{folder}").pool
    x = np.empty((len(pool), *pool.input_shape), dtype=np.float32)
    for start in range(0, len(pool), chunk):
        ids = pool.ids[start : start + chunk]
        x[start : start + len(ids)] = pool.load(ids).numpy()
    np.savez(out, x=x, y=pool.targets(pool.ids))


if __name__ == "__main__":
    main()

"""Measure ranking a large pool: the local executor against Ray Data with 1 and 2 scoring workers.

Writes the synthetic manifest of ``scale_store.py`` (N distinct paths over a few hundred real 28x28 MNIST PNGs),
then runs ``activeadv bench rank --dataset manifest:FILE --json`` once per executor and repeat, each in a fresh
process (so peak RSS is that run's driver alone), interleaved (local, ray 1, ray 2, local, ...) so that load on a
shared machine hits every executor alike.  Prints, per executor: images/s (median, min, max), driver peak RSS,
Ray's start-up, and whether every run selected the same items (sha1 of the picks) and the same images: the
manifest repeats a few hundred images, so copies of one image tie exactly, and which copy wins a tie depends on
float rounding (a different torch thread count changes it); ``local-1t`` runs the local executor with one
thread, as each Ray actor has.

    nice -n 10 .venv/bin/python scripts/scale_rank.py --items 1000000 --json docs/results/scale/rank_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_store import emit, make_manifest  # noqa: E402

EXECUTORS = {"local": [], "local-1t": ["--threads", "1"], "ray-1": ["--executor", "ray", "--ray-workers", "1"],
             "ray-2": ["--executor", "ray", "--ray-workers", "2"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--strategy", default="dfal")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--executors", default="local,ray-1,ray-2",
                        help=f"any of {', '.join(EXECUTORS)} (local-1t: one torch thread, as each Ray actor has)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in args.executors.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_manifest(Path(tmp), args.items, args.images, hash_column=True)
        for repeat in range(args.repeats):
            for name in runs:
                cmd = [str(ROOT / ".venv" / "bin" / "activeadv"), "bench", "rank", "--dataset",
                       f"manifest:{manifest}", "--strategy", args.strategy, "--json", "-q", *EXECUTORS[name]]
                done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAY_DEDUP_LOGS": "1"})
                try:  # Ray may print its own lines to stdout before the JSON document
                    result = json.loads(done.stdout[done.stdout.index("\n{") + 1 if not done.stdout.startswith("{")
                                                     else 0:])
                except ValueError:
                    result = None
                if done.returncode != 0 or result is None:
                    sys.stderr.write(f"{name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                                     f"{done.stderr[-3000:]}\n")
                    return 1
                runs[name].append(result)
                print(f"[{repeat}] {name}: {result['images_per_s']:.0f} img/s, rank {result['rank_s']:.1f}s, "
                      f"driver peak RSS {result['peak_rss_bytes'] / 2**20:.0f} MiB, sha1 "
                      f"{result['selected_sha1'][:12]}", file=sys.stderr, flush=True)
    shas = {r["selected_sha1"] for rs in runs.values() for r in rs}
    # row k of the manifest is image k % images: the same images picked, whichever copies
    images = {tuple(sorted(i % args.images for i in r["selected_ids"])) for rs in runs.values() for r in rs}
    summary = {"items": args.items, "strategy": args.strategy, "repeats": args.repeats,
               "identical_picks": len(shas) == 1, "identical_picked_images": len(images) == 1,
               "picks_by_executor": {name: sorted({r["selected_sha1"][:12] for r in rs}) for name, rs in runs.items()},
               "machine": next(iter(runs.values()))[0]["machine"], "executors": {}}
    for name, rs in runs.items():
        speed = [r["images_per_s"] for r in rs]
        summary["executors"][name] = {
            "images_per_s_median": statistics.median(speed), "images_per_s_min": min(speed),
            "images_per_s_max": max(speed), "rank_s_median": statistics.median(r["rank_s"] for r in rs),
            "driver_peak_rss_mib": max(r["peak_rss_bytes"] for r in rs) / 2**20,
            "ray_start_s_median": None if rs[0]["ray_start_s"] is None
            else statistics.median(r["ray_start_s"] for r in rs),
            "ranked": rs[0]["ranked"], "selected": rs[0]["selected"]}
    emit(summary, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure the store at scale: `init` of an N-item manifest into PostgreSQL, database size, status, candidates.

Writes a synthetic manifest of N rows pointing at a few hundred real 28x28 PNGs (MNIST digits) reused through
folder symlinks (``d0000/017.png``, ``d0001/017.png``, ...: N distinct paths, few files), creates a scratch
PostgreSQL database, runs the `init` use case on it (twice: the second must add nothing), then times ``status``
(median of 5), ``candidates()`` and ``iter_candidates()``, and drops the database.  ``--hash-column`` gives the
manifest a ``hash`` column so that `init` takes content hashes from it instead of reading every file.

    nice -n 10 .venv/bin/python scripts/scale_store.py --items 1000000 --hash-column
    nice -n 10 .venv/bin/python scripts/scale_store.py --items 1000000          # hashes 1M files
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

log = logging.getLogger("scale_store")
ROOT = Path(__file__).resolve().parents[1]


def make_manifest(folder: Path, items: int, images: int, hash_column: bool) -> Path:
    """``folder/manifest.csv`` with ``items`` distinct paths over ``images`` real PNG files."""
    from PIL import Image

    from activeadv.data import load_dataset
    from activeadv.manifest import content_hash

    real = folder / "img"
    real.mkdir(parents=True)
    digits = load_dataset(f"idx:{ROOT.parent / 'shared' / 'data' / 'mnist'}").test
    assert digits is not None
    x = (digits.load(np.arange(images)).numpy()[:, 0] * 255).astype(np.uint8)
    labels = digits.targets(np.arange(images))
    hashes = []
    for i in range(images):
        Image.fromarray(x[i]).save(real / f"{i:03d}.png")
        hashes.append(content_hash(real / f"{i:03d}.png"))
    copies = -(-items // images)
    for d in range(copies):
        os.symlink("img", folder / f"d{d:05d}")
    manifest = folder / "manifest.csv"
    with open(manifest, "w") as fh:
        fh.write("path,label,hash\n" if hash_column else "path,label\n")
        for row in range(items):
            d, i = divmod(row, images)
            fh.write(f"d{d:05d}/{i:03d}.png,{labels[i]}" + (f",{hashes[i]}\n" if hash_column else "\n"))
    return manifest


def emit(figures: dict, path: Path | None) -> None:
    """The figures as JSON on stdout and, when ``path`` is given, in that file (the scale scripts' output)."""
    text = json.dumps(figures, indent=2, default=float)
    sys.stdout.write(text + "\n")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=300, help="real PNG files the rows point at")
    parser.add_argument("--hash-column", action="store_true", help="take content hashes from the manifest")
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from activeadv.app.projects import init_project
    from activeadv.app.workspace import Workspace
    from activeadv.data import load_dataset
    from activeadv.store import Store

    name = f"activeadv_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    out: dict[str, object] = {"items": args.items, "hash_column": args.hash_column}
    with sa.create_engine(url).connect() as conn:  # what an empty database weighs: not scaled up
        empty = int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar() or 0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest, out["manifest_s"] = timed(make_manifest, Path(tmp), args.items, args.images, args.hash_column)
            spec = f"manifest:{manifest}"
            data, out["load_manifest_s"] = timed(load_dataset, spec)
            pool = data.pool
            _, out["hash_s"] = timed(lambda: [pool.fingerprint(int(i)) for i in pool.ids])  # what init does
            del data
            with Workspace(url) as ws:
                first, out["init_s"] = timed(init_project, ws, "scale", spec)
                again, out["init_again_s"] = timed(init_project, ws, "scale", spec)
            out["added"], out["added_again"] = first.registered["pool"].added, again.registered["pool"].added
            with Store.open(url) as store:
                project = store.get_project("scale")
                status_s = [timed(store.status, project.id)[1] for _ in range(5)]
                out["status_median_s"], out["status_spread_s"] = statistics.median(status_s), [min(status_s),
                                                                                               max(status_s)]
                cands, out["candidates_s"] = timed(store.candidates, project.id)
                parts, out["iter_candidates_s"] = timed(lambda: sum(len(c) for c in
                                                                    store.iter_candidates(project.id)))
                assert parts == len(cands)
                with store.engine.connect() as conn:
                    out["database_bytes"] = conn.execute(sa.text("SELECT pg_database_size(current_database())")
                                                         ).scalar()
                    out["items_table_bytes"] = conn.execute(sa.text("SELECT pg_total_relation_size('items')")
                                                            ).scalar()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    scale = 10_000_000 / args.items
    out["extrapolated_10M"] = {"init_s": round(float(out["init_s"]) * scale, 1),  # type: ignore[arg-type]
                               "database_gib": round((empty + (int(out["database_bytes"]) - empty) * scale)  # type: ignore
                                                     / 2**30, 2),
                               "status_s": round(float(out["status_median_s"]) * scale, 2)}  # type: ignore
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

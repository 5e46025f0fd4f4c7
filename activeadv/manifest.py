"""A pool listed in a manifest file (``manifest:FILE.csv`` or ``.parquet``): images anywhere, one row each.

Large pools do not live in one folder: a fleet's frames or a web crawl sit in
object storage, listed in a table.  A manifest names each item by ``path`` (or
``uri``), with an optional ``label`` (class name), ``split`` (``pool`` or
``test``; pool when absent) and ``hash`` (the content hash to register, so that
``init`` of ten million items need not read ten million files).  Relative
paths resolve against the manifest's folder; the item key stored in the
database is the path *as written*, so moving the manifest with its images keeps
every id.

Pixels are decoded by ``FolderPool`` (this pool only says where each file is):
a local path is opened directly, an ``s3://`` / ``gs://`` / ``http(s)://``
URI through fsspec when it is installed (optional).  Only the first image is
opened when the manifest is read (its mode and size are the pool's); a file
that later fails to decode is zero-filled and marked unreadable, as in a folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from activeadv.data import Dataset, FolderPool, Pool
from activeadv.errors import DataError

log = logging.getLogger(__name__)

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
PATH_COLUMNS = ("path", "uri")
SPLITS = ("pool", "test")


class ManifestPool(FolderPool):
    """Images named by a manifest's rows: local paths (relative to the manifest) or fsspec URIs.

    ``hashes``: the manifest's ``hash`` column when it has one; ``fingerprint``
    then returns it instead of reading the file (registration at scale).
    """

    def __init__(self, root: Path, keys: Sequence[str], class_names: Sequence[str], targets: np.ndarray | None,
                 mode: str, size: tuple[int, int], hashes: Sequence[str] | None = None) -> None:
        super().__init__(root, keys, class_names, targets, mode, size)
        self._hashes = None if hashes is None else list(hashes)

    def _is_uri(self, position: int) -> bool:
        return _URI.match(self._all_keys[position]) is not None

    def _path(self, position: int) -> str:
        key = self._all_keys[position]
        if key.startswith("file://"):
            return key[len("file://"):]
        return key if _URI.match(key) else os.path.join(self._root_str, key)

    def _open(self, position: int) -> Any:
        if self._is_uri(position) and not self._all_keys[position].startswith("file://"):
            return io.BytesIO(self._raw_bytes(position))  # read whole: PIL does not close a stream it was given
        return self._path(position)

    def _raw_bytes(self, position: int) -> bytes:
        key = self._all_keys[position]
        if self._is_uri(position) and not key.startswith("file://"):
            import fsspec  # checked present when the manifest was read

            with fsspec.open(key, "rb") as fh:
                return fh.read()
        return super()._raw_bytes(position)

    def fingerprint(self, item_id: int) -> str:
        if self._hashes is not None:
            return self._hashes[self._position_of(item_id)]
        return super().fingerprint(item_id)


# ---------------------------------------------------------------------- reading
def _rows(path: Path) -> tuple[list[str], Iterable[dict[str, Any]]]:
    """Column names and the rows (dicts) of a CSV or Parquet manifest."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ModuleNotFoundError:
            raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow); or use a .csv") from None
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
            raise DataError(f"cannot read {path} as Parquet: {str(exc).splitlines()[0]}") from None
        return list(table.column_names), table.to_pylist()
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read manifest {path}: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        try:
            columns = [c.strip() for c in reader.fieldnames or []]
            reader.fieldnames = columns
            rows = list(reader)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path} as CSV: {exc}") from None
    return columns, rows


def _check_uri(manifest: Path, line: int, value: str) -> None:
    """A URI scheme fsspec can read, or ``DataError`` naming the row."""
    scheme = _URI.match(value)
    if scheme is None or scheme.group(1) == "file":
        return
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ModuleNotFoundError:
        raise DataError(f"{manifest} row {line}: '{value}' is a URI; reading URIs needs fsspec "
                        "(pip install fsspec and the filesystem, e.g. s3fs)") from None
    name = scheme.group(1).lower()
    if name not in known_implementations and name not in fsspec.available_protocols():
        raise DataError(f"{manifest} row {line}: unsupported URI scheme '{name}://' in '{value}'")


def load_manifest(spec: str, arg: str, class_names: Sequence[str] | None) -> Dataset:
    """The pool (and test split) a manifest lists; see the module docstring.  Raises one-line ``DataError``s."""
    if not arg:
        raise DataError(f"dataset spec '{spec}' needs a file: manifest:FILE.csv")
    manifest = Path(arg).expanduser()
    if not manifest.is_file():
        raise DataError(f"manifest not found: {manifest}")
    columns, rows = _rows(manifest)
    path_col = next((c for c in PATH_COLUMNS if c in columns), None)
    if path_col is None:
        raise DataError(f"{manifest}: no 'path' or 'uri' column (columns: {', '.join(columns) or 'none'})")
    has_label, has_split, has_hash = "label" in columns, "split" in columns, "hash" in columns
    root = manifest.resolve().parent
    keys: dict[str, list[str]] = {s: [] for s in SPLITS}
    labels: dict[str, list[str]] = {s: [] for s in SPLITS}
    hashes: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        value = str(row.get(path_col) or "").strip()
        if not value:
            raise DataError(f"{manifest} row {line}: empty {path_col}")
        split = str(row.get("split") or "pool").strip() if has_split else "pool"
        if split not in SPLITS:
            raise DataError(f"{manifest} row {line}: split '{split}' is not pool or test")
        if (split, value) in seen:
            raise DataError(f"{manifest} row {line}: '{value}' is listed twice in the {split} split")
        seen.add((split, value))
        if _URI.match(value):
            _check_uri(manifest, line, value)
            if value.startswith("file://") and not os.path.isfile(value[len("file://"):]):
                raise DataError(f"{manifest} row {line}: file not found: {value}")
        elif not os.path.isfile(os.path.join(root, value)):
            raise DataError(f"{manifest} row {line}: file not found: {value}")
        keys[split].append(value)
        labels[split].append(str(row.get("label") or "").strip() if has_label else "")
        if has_hash:
            digest = str(row.get("hash") or "").strip()
            if not digest:
                raise DataError(f"{manifest} row {line}: empty hash (the column is all or nothing)")
            hashes[split].append(digest)
    if not keys["pool"]:
        raise DataError(f"{manifest}: no pool rows")
    names = _class_names(manifest, labels, class_names)
    pool = _pool(manifest, root, keys["pool"], labels["pool"], names, hashes["pool"] if has_hash else None)
    test = None
    if keys["test"]:
        test_targets = _targets(manifest, labels["test"], names, "test")
        if test_targets is None:
            raise DataError(f"{manifest}: test rows need a label each")
        test = ManifestPool(root, keys["test"], names, test_targets, pool._mode, pool._size,
                            hashes["test"] if has_hash else None)
    log.info("%s: %d pool items, %d test items", manifest, len(pool), 0 if test is None else len(test))
    return Dataset(spec, pool, test)


def _class_names(manifest: Path, labels: dict[str, list[str]], given: Sequence[str] | None) -> list[str]:
    found = sorted({lab for split in SPLITS for lab in labels[split] if lab})
    if given:
        unknown = sorted(set(found) - set(given))
        if unknown:
            raise DataError(f"{manifest}: label(s) {', '.join(unknown[:5])} not among the classes "
                            f"{', '.join(given)}")
        return list(given)
    if not found:
        raise DataError(f"{manifest}: no labels to take class names from; pass --classes")
    return found


def _targets(manifest: Path, labels: list[str], names: list[str], split: str) -> np.ndarray | None:
    """Class indices when every row of ``split`` has a label; None when none or only some do (logged)."""
    filled = sum(1 for lab in labels if lab)
    if filled == 0:
        return None
    if filled < len(labels):
        log.warning("%s: %d of %d %s rows have no label: the %s split is treated as unlabeled", manifest,
                    len(labels) - filled, len(labels), split, split)
        return None
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter((index[lab] for lab in labels), dtype=np.int64, count=len(labels))


def _pool(manifest: Path, root: Path, keys: list[str], labels: list[str], names: list[str],
          hashes: list[str] | None) -> ManifestPool:
    """The pool, with mode and size taken from its first readable image (only that one is opened)."""
    from PIL import Image

    probe = ManifestPool(root, keys, names, None, "L", (1, 1), hashes)
    for position in range(min(len(keys), 100)):
        try:
            with Image.open(probe._open(position)) as img:
                mode = "L" if img.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                size = img.size
            break
        except Exception as exc:  # PIL raises many types for corrupt data
            log.warning("skipping unreadable image %s: %s", keys[position], exc)
    else:
        raise DataError(f"{manifest}: none of the first {min(len(keys), 100)} images could be read")
    return ManifestPool(root, keys, names, _targets(manifest, labels, names, "pool"), mode, size, hashes)


def content_hash(path: str | Path) -> str:
    """SHA-1 of a file, as ``Pool.fingerprint`` computes it: what a manifest's ``hash`` column must hold."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["ManifestPool", "Pool", "content_hash", "load_manifest"]

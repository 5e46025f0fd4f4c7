"""Pools of items to label: where pixels come from, in batches, by item id.

A ``Pool`` maps stable item ids to inputs: images as ``(C, H, W)`` float32 in
[0, 1], feature vectors as ``(D,)`` float32 standardized by the pool's own
per-feature mean and standard deviation (``FeatureScaling``).  Nothing outside
this module knows whether the pixels live in memory (built-in ``digits``, IDX,
``.npz``) or are decoded from an image folder on demand; callers ask for
``load(ids)`` or make a pass with ``stream(pool, ids, batch_size)``
(``Pool.batches`` on a device, with a progress bar) so that memory stays
bounded however large the pool is.
``chunks(seq, size)`` is the one slicing loop behind both (and behind the
network's row slices).

Dataset specs accepted by ``load_dataset``::

    digits            scikit-learn's embedded 8x8 digits (1,797 images)
    idx:DIR           MNIST-style IDX files (plain or .gz): train-* is the pool, t10k-* the test split
    npz:FILE          arrays x [, y] [, x_test, y_test] [, class_names]
    folder:DIR        images; one sub-folder per class when labels are known;
                      DIR/train and DIR/test are used as pool and test split when both exist
    manifest:FILE     a .csv (or .parquet) listing path or uri [, label] [, split] [, hash] (activeadv.manifest)
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from activeadv.errors import DataError
from activeadv.progress import bar as progress_bar

log = logging.getLogger(__name__)

_Sliceable = TypeVar("_Sliceable")  # a list, an array, a tensor: anything with len() and slices


def chunks(seq: _Sliceable, size: int) -> Iterator[_Sliceable]:
    """``seq[0:size]``, ``seq[size:2*size]``, ...: consecutive slices (views for arrays and tensors), the last
    one shorter when ``len(seq)`` is not a multiple of ``size``; nothing for an empty ``seq``."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for start in range(0, len(seq), size):  # type: ignore[arg-type]
        yield seq[start : start + size]  # type: ignore[index]


def stream(pool: Pool, ids: np.ndarray | Sequence[int], batch_size: int, *,
           device: torch.device | str | None = None, desc: str = "", progress: bool = False
           ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """One pass over ``ids`` of ``pool``: ``(ids_chunk, inputs)`` per batch of ``batch_size``, in order.

    Every pass over a pool goes through here (prediction, evaluation, each
    score, embeddings, the benchmarks): ``pool.batches`` (a folder pool decodes
    the next batch while this one is used), inputs moved to ``device`` when
    given, and an images/s progress bar (``desc``) when ``progress`` is asked
    and stderr is a terminal.  Only one or two batches are in memory at a time.
    """
    ids = np.asarray(ids, dtype=np.int64)
    with progress_bar(progress, total=len(ids), desc=desc, unit="img", unit_scale=True, leave=False) as bar:
        for chunk, x in pool.batches(ids, batch_size):
            yield chunk, x if device is None else x.to(device)
            bar.update(len(chunk))


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class Pool:
    """Items addressed by id; pixels loaded on demand.

    Subclasses implement ``_load_positions`` (positions are private) and
    ``_raw_bytes``; the public API only speaks item ids.
    """

    scaling: FeatureScaling | None = None  # feature vectors: how their stored values become inputs (ArrayPool)

    def __init__(
        self,
        keys: Sequence[str],
        class_names: Sequence[str],
        input_shape: tuple[int, ...],
        targets: np.ndarray | None = None,
        ids: np.ndarray | None = None,
        clip_range: tuple[float, float] | None = (0.0, 1.0),
    ) -> None:
        self._all_keys: list[str] = list(keys)  # by storage position
        self.keys: list[str] = self._all_keys  # aligned with ``ids`` (differs only in a ``subset`` view)
        self.class_names: list[str] = list(class_names)
        self.input_shape = tuple(int(s) for s in input_shape)
        self._targets = None if targets is None else np.asarray(targets, dtype=np.int64)
        self.clip_range = clip_range
        self.ids = np.arange(len(self.keys), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if len(self.ids) != len(self.keys):
            raise DataError(f"{len(self.ids)} ids for {len(self.keys)} items")
        self._index_positions(np.arange(len(self.ids), dtype=np.int64))
        self.unreadable: set[int] = set()  # ids whose pixels could not be decoded

    def _index_positions(self, storage_positions: np.ndarray) -> None:
        """id -> storage position as two sorted arrays (16 bytes an item; a dict took ~100 on large pools)."""
        order = np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids[order]
        if len(self._sorted_ids) > 1 and (np.diff(self._sorted_ids) == 0).any():
            raise DataError("item ids must be unique")
        self._sorted_positions = np.asarray(storage_positions, dtype=np.int64)[order]

    # ----------------------------------------------------------------- ids
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def has_targets(self) -> bool:
        return self._targets is not None

    def positions(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Storage positions of ``ids``; an id not in the pool raises ``DataError``."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        at = np.searchsorted(self._sorted_ids, ids)
        found = at < len(self._sorted_ids)
        found[found] = self._sorted_ids[at[found]] == ids[found]
        if not found.all():
            raise DataError(f"unknown item id {int(ids[~found][0])}")
        return self._sorted_positions[at]

    def _position_of(self, item_id: int) -> int:
        return int(self.positions([item_id])[0])

    def with_ids(self, ids: np.ndarray | Sequence[int]) -> Pool:
        """The same items under other ids (e.g. database keys), in the same order."""
        new_ids = np.asarray(ids, dtype=np.int64)
        if len(new_ids) != len(self.ids):
            raise DataError(f"with_ids needs one id per item: {len(new_ids)} ids for {len(self.ids)} items")
        clone = self._clone(new_ids, self.positions(self.ids))  # raises when the new ids repeat
        clone.unreadable = set()
        return clone

    def subset(self, ids: np.ndarray | Sequence[int]) -> Pool:
        """A view on some of the items, under the same ids: nothing is loaded or copied."""
        ids = np.asarray(ids, dtype=np.int64)
        return self._clone(ids, self.positions(ids))  # shares ``unreadable``: same ids, same files

    def _clone(self, ids: np.ndarray, storage_positions: np.ndarray) -> Pool:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.ids = ids
        clone._index_positions(storage_positions)
        clone.keys = [self._all_keys[int(p)] for p in storage_positions]
        return clone

    def targets(self, ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Ground-truth class indices (simulation only)."""
        if self._targets is None:
            raise DataError("this dataset has no known labels")
        return self._targets[self.positions(ids)]

    def key_of(self, item_id: int) -> str:
        return self._all_keys[self._position_of(item_id)]

    # -------------------------------------------------------------- pixels
    def load(self, ids: np.ndarray | Sequence[int]) -> torch.Tensor:
        """Inputs for ``ids`` as float32 in ``clip_range``: (N, *input_shape)."""
        ids = np.asarray(ids, dtype=np.int64)
        return canonical(self._load_positions(self.positions(ids), ids))

    def batches(self, ids: np.ndarray | Sequence[int], batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(ids_chunk, inputs)`` batch by batch, so that only one batch is in memory at a time.

        The source's own iteration; a pass over the pool uses ``stream``, which adds the device and progress.
        """
        for chunk in chunks(np.asarray(ids, dtype=np.int64), batch_size):
            yield chunk, self.load(chunk)

    def fingerprint(self, item_id: int) -> str:
        """SHA-1 of the item's raw content: finds the same image again under another name."""
        return hashlib.sha1(self._raw_bytes(self._position_of(item_id))).hexdigest()

    def _load_positions(self, positions: np.ndarray, ids: np.ndarray) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _raw_bytes(self, position: int) -> bytes:  # pragma: no cover
        raise NotImplementedError


def canonical(x: torch.Tensor) -> torch.Tensor:
    """``x`` in one fixed memory layout: channels-last for image batches, row-major otherwise.

    Why one: torch reads the layout from the strides, and a size-1 channel
    axis can carry either (an (N, H, W) array made (N, 1, H, W) by
    ``a[:, None]`` looks channels-last; its pickled copy in a ``simulate
    --jobs`` worker looks row-major), so the same seeded run took different
    convolution kernels, and got different models, depending on how the
    pool's array was built.  Why channels-last: the CNN's forward+backward on
    CPU is 1.2x (64 RGB images) to 1.55x (256 MNIST digits) faster on it, and
    a folder pool of digits, row-major before, ranks 16% faster
    (docs/benchmarks.md, "Memory layout").  A view when ``x`` already has the
    layout's memory order, else a copy.
    """
    if x.dim() != 4:
        return x.contiguous()
    x = x.contiguous(memory_format=torch.channels_last)
    _, c, h, w = (max(int(v), 1) for v in x.shape)
    return x.as_strided(x.shape, (h * w * c, 1, w * c, c))  # explicit: also the strides of size-1 axes


@dataclass(frozen=True)
class FeatureScaling:
    """Per-feature centre and scale of a pool of feature vectors: inputs become ``(x - center) / scale``.

    Why: feature vectors (tabular columns, embeddings) come in any units.  On
    8x8 digits written as 64 features with scales from 0.01 to 100, the MLP
    stayed at 66% with 200 labels whatever the strategy (93-98% standardized),
    and one ``--epsilon`` meant a hundredth of a standard deviation for one
    feature and a hundred for another; breast-cancer's 30 measurements gain
    0.019 AULC (docs/results.md, "Feature vectors").  Standardized, every
    feature is in units of its own spread over the pool, so training, DeepFool
    distances and every attack's radius mean the same whatever the units.  Fitted on the pool (labels are
    not used, so every item counts) and reused for the test split; a constant
    feature keeps scale 1.  A pure function of the pool's array, so a project
    reopened later (or a Ray worker) computes the same scaling.  A file that
    holds ``feature_scale`` (and ``feature_center``) sets the units itself.
    """

    center: np.ndarray  # (D,) float32
    scale: np.ndarray  # (D,) float32, > 0
    source: Literal["pool", "file"] = "pool"  # fitted on the pool, or the file's feature_scale / feature_center

    def describe(self) -> str:
        """One line for people: what happens to their values (``init`` prints it)."""
        if self.source == "file":
            return f"{len(self.scale)} features, in the units the file sets (feature_scale, feature_center)"
        return (f"{len(self.scale)} features, each standardized by the pool's mean and standard deviation "
                "(to keep the stored values, save feature_scale=ones in the .npz)")

    @classmethod
    def fit(cls, array: np.ndarray, rows: int = 65536) -> FeatureScaling:
        """Mean and standard deviation of each column, two passes in float64 over ``rows`` rows at a time.

        Two passes (mean, then squared deviations) so that a constant column
        gives exactly 0, not rounding noise; chunks so that a large pool needs
        no float64 copy of itself.
        """
        if array.ndim != 2 or len(array) == 0:
            raise DataError(f"feature scaling needs a non-empty (N, D) array, got shape {array.shape}")
        total = np.zeros(array.shape[1])
        for part in chunks(array, rows):
            total += part.sum(axis=0, dtype=np.float64)
        mean = total / len(array)
        squares = np.zeros(array.shape[1])
        for part in chunks(array, rows):
            squares += np.square(part.astype(np.float64) - mean).sum(axis=0)
        std = np.sqrt(squares / len(array))
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise DataError("feature vectors hold NaN or infinite values")
        return cls(mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32))

    def apply(self, part: np.ndarray) -> np.ndarray:
        return (part.astype(np.float32) - self.center) / self.scale


class ArrayPool(Pool):
    """Items held in one numpy array (uint8 0-255 or float in [0, 1]; feature vectors: any, with ``scaling``)."""

    def __init__(self, array: np.ndarray, class_names: Sequence[str], targets: np.ndarray | None = None,
                 keys: Sequence[str] | None = None, clip_range: tuple[float, float] | None = (0.0, 1.0),
                 scaling: FeatureScaling | None = None) -> None:
        array = np.asarray(array)
        if array.ndim == 3:  # (N, H, W) grayscale images
            array = array[:, None]
        if array.ndim not in (2, 4):
            raise DataError(f"expected (N, D), (N, H, W) or (N, C, H, W) inputs, got shape {array.shape}")
        if array.dtype != np.uint8:
            array = array.astype(np.float32, copy=False)
            if array.ndim == 4 and (array.min() < 0 or array.max() > 1):
                raise DataError("float images must be scaled to [0, 1] (or stored as uint8 0-255)")
        if scaling is not None and (array.ndim != 2 or scaling.center.shape != array.shape[1:]):
            raise DataError(f"feature scaling for {scaling.center.shape[0]} features does not fit inputs of "
                            f"shape {array.shape[1:]}")
        self._array = array
        self.scaling = scaling
        if array.ndim == 2:
            clip_range = None  # feature vectors have no natural valid range
        keys = [str(i) for i in range(len(array))] if keys is None else keys
        super().__init__(keys, class_names, array.shape[1:], targets, clip_range=clip_range)

    def _load_positions(self, positions: np.ndarray, ids: np.ndarray) -> torch.Tensor:
        part = self._array[positions]
        if self.scaling is not None:  # from the stored values: standardizing makes the uint8 -> [0, 1] step moot
            return torch.from_numpy(self.scaling.apply(part))
        if part.dtype == np.uint8:
            return torch.from_numpy(part.astype(np.float32) / 255.0)
        return torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))

    def _raw_bytes(self, position: int) -> bytes:
        return np.ascontiguousarray(self._array[position]).tobytes()


class FolderPool(Pool):
    """Images decoded from files on demand; only a batch is ever in memory.

    All images are converted to the mode and size of the first readable one
    (grayscale stays one channel).  Files that cannot be opened are reported and
    left out when the folder is scanned; files that fail to decode later are
    reported, zero-filled and added to ``unreadable`` so that no strategy or
    trainer uses them.
    """

    def __init__(self, root: Path, keys: Sequence[str], class_names: Sequence[str],
                 targets: np.ndarray | None, mode: str, size: tuple[int, int]) -> None:
        """``keys``: file paths relative to ``root``, '/'-separated (only these strings are kept per file)."""
        self.root = root
        self._root_str = str(root)
        self._mode = mode
        self._size = size  # (width, height)
        channels = 1 if mode == "L" else 3
        super().__init__(keys, class_names, (channels, size[1], size[0]), targets)

    def _path(self, position: int) -> str:
        return os.path.join(self._root_str, self._all_keys[position])

    def path_of(self, item_id: int) -> Path:
        return Path(self._path(self._position_of(item_id)))

    def batches(self, ids: np.ndarray | Sequence[int], batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Stream ``(ids_chunk, inputs)``, decoding the next batch in a background thread.

        The consumer's model runs while the next files are decoded (torch
        releases the GIL), so at most two batches are in memory at a time.
        """
        from concurrent.futures import ThreadPoolExecutor

        parts = list(chunks(np.asarray(ids, dtype=np.int64), batch_size))  # views: no copy of the ids
        if len(parts) <= 1:
            yield from super().batches(ids, batch_size)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="folder-decode") as executor:
            pending = executor.submit(self.load, parts[0])
            try:
                for k, chunk in enumerate(parts):
                    x = pending.result()
                    if k + 1 < len(parts):
                        pending = executor.submit(self.load, parts[k + 1])
                    yield chunk, x
            finally:
                pending.cancel()

    def _load_positions(self, positions: np.ndarray, ids: np.ndarray) -> torch.Tensor:
        from PIL import Image

        out = np.zeros((len(positions), *self.input_shape), dtype=np.float32)
        for row, (pos, item_id) in enumerate(zip(positions, ids)):
            path = self._path(int(pos))
            try:
                with Image.open(self._open(int(pos))) as img:
                    img = img.convert(self._mode)
                    if img.size != self._size:
                        img = img.resize(self._size)
                    pixels = np.asarray(img, dtype=np.float32) / 255.0
            except Exception as exc:  # PIL raises many types for corrupt data
                if int(item_id) not in self.unreadable:
                    log.warning("skipping unreadable image %s: %s", path, exc)
                self.unreadable.add(int(item_id))
                continue
            out[row] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        return torch.from_numpy(out)

    def _open(self, position: int) -> Any:
        """What ``PIL.Image.open`` reads for a position: the local path (a manifest pool may open a URI)."""
        return self._path(position)

    def _raw_bytes(self, position: int) -> bytes:
        with open(self._path(position), "rb") as fh:
            return fh.read()


@dataclass(frozen=True)
class Dataset:
    """A pool to label and, when there is one, a held-out test split with labels."""

    spec: str
    pool: Pool
    test: Pool | None

    @property
    def class_names(self) -> list[str]:
        return self.pool.class_names


# ---------------------------------------------------------------------- loaders
def load_dataset(spec: str, *, class_names: Sequence[str] | None = None) -> Dataset:
    """Open a dataset from its spec (see the module docstring); raises ``DataError``."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        return _load_digits(class_names)
    if kind == "manifest":  # paths or URIs listed in a CSV / Parquet file (activeadv.manifest)
        from activeadv.manifest import load_manifest

        return load_manifest(spec, arg, class_names)
    if kind in ("idx", "npz", "folder"):
        if not arg:
            raise DataError(f"dataset spec '{spec}' needs a path: {kind}:PATH")
        path = Path(arg).expanduser()
        if not path.exists():
            raise DataError(f"dataset path not found: {path}")
        loader = {"idx": _load_idx, "npz": _load_npz, "folder": _load_folder}[kind]
        return loader(spec, path, class_names)
    raise DataError(f"unknown dataset '{spec}': use digits, idx:DIR, npz:FILE, folder:DIR or manifest:FILE")


def _names(num: int, given: Sequence[str] | None) -> list[str]:
    if given is None:
        return [str(i) for i in range(num)]
    if len(given) < num:
        raise DataError(f"{len(given)} class names given, but the labels have {num} classes")
    return list(given)


def _load_digits(class_names: Sequence[str] | None) -> Dataset:
    """Embedded digits, split 70/30 stratified with a fixed seed so every run sees the same test set."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(index, test_size=0.3, random_state=0, stratify=bunch.target)
    train_idx.sort()
    test_idx.sort()
    names = _names(10, class_names)
    pool = ArrayPool(images[train_idx], names, bunch.target[train_idx], keys=[f"digits/{i}" for i in train_idx])
    test = ArrayPool(images[test_idx], names, bunch.target[test_idx], keys=[f"digits/{i}" for i in test_idx])
    return Dataset("digits", pool, test)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a numpy array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            header = fh.read(4)
            if len(header) != 4 or header[0] != 0 or header[1] != 0:
                raise DataError(f"{path} is not an IDX file")
            dtype: Any = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
                          0x0E: ">f8"}.get(header[2])
            if dtype is None:
                raise DataError(f"{path}: unknown IDX data type 0x{header[2]:02x}")
            ndim = header[3]
            shape = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
            data = np.frombuffer(fh.read(), dtype=dtype)
    except (OSError, EOFError, struct.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    expected = int(np.prod(shape))
    if data.size != expected:
        raise DataError(f"{path}: expected {expected} values for shape {shape}, found {data.size}")
    return data.reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / candidate).exists():
            return directory / candidate
    return None


def _load_idx(spec: str, directory: Path, class_names: Sequence[str] | None) -> Dataset:
    if not directory.is_dir():
        raise DataError(f"idx: expects a folder holding IDX files, got {directory}")
    train_x = _find(directory, "train-images-idx3-ubyte")
    if train_x is None:
        raise DataError(f"no train-images-idx3-ubyte[.gz] in {directory}")
    train_y = _find(directory, "train-labels-idx1-ubyte")
    test_x, test_y = _find(directory, "t10k-images-idx3-ubyte"), _find(directory, "t10k-labels-idx1-ubyte")
    x = read_idx(train_x)
    y = read_idx(train_y).astype(np.int64) if train_y else None
    num = int(max(y.max() if y is not None else 0, read_idx(test_y).max() if test_y else 0)) + 1
    names = _names(max(num, len(class_names or [])), class_names)
    if y is not None and len(y) != len(x):
        raise DataError(f"{train_y}: {len(y)} labels for {len(x)} images")
    pool = ArrayPool(x, names, y, keys=[f"train/{i}" for i in range(len(x))])
    test = None
    if test_x and test_y:
        tx, ty = read_idx(test_x), read_idx(test_y).astype(np.int64)
        test = ArrayPool(tx, names, ty, keys=[f"t10k/{i}" for i in range(len(tx))])
    return Dataset(spec, pool, test)


def _load_npz(spec: str, path: Path, class_names: Sequence[str] | None) -> Dataset:
    try:
        arrays = np.load(path, allow_pickle=False)
        files = set(arrays.files)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}") from None
    if "x" not in files:
        raise DataError(f"{path} has no array named 'x' (found: {', '.join(sorted(files)) or 'none'})")
    x = arrays["x"]
    y = arrays["y"].astype(np.int64) if "y" in files else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(y)} labels in 'y' for {len(x)} inputs in 'x'")
    if "class_names" in files and class_names is None:
        class_names = [str(c) for c in arrays["class_names"]]
    ys = [a for a in (y, arrays["y_test"] if "y_test" in files else None) if a is not None]
    num = int(max(int(a.max()) for a in ys)) + 1 if ys else len(class_names or [])
    if num == 0:
        raise DataError(f"{path}: no labels and no class_names: pass --classes")
    names = _names(max(num, len(class_names or [])), class_names)
    scaling = _feature_scaling(path, arrays, x) if x.ndim == 2 and len(x) else None  # also for the test split
    pool = ArrayPool(x, names, y, scaling=scaling)
    test = None
    if "x_test" in files and "y_test" in files:
        test = ArrayPool(arrays["x_test"], names, arrays["y_test"].astype(np.int64),
                         keys=[f"test/{i}" for i in range(len(arrays["x_test"]))], scaling=scaling)
    return Dataset(spec, pool, test)


def _feature_scaling(path: Path, arrays: Any, x: np.ndarray) -> FeatureScaling:
    """The pool's own (``FeatureScaling.fit``) unless the file sets the units: ``feature_scale``, ``feature_center``.

    Why a way out: when every feature already has one unit (pixels written as
    features), dividing a nearly constant feature by its tiny spread turns
    noise into a large input; on 8x8 digits as 64 features that cost 0.015
    AULC (docs/results.md).  ``feature_scale = ones`` keeps the values as stored.
    """
    if "feature_scale" not in arrays.files:
        return FeatureScaling.fit(x)
    scale = np.asarray(arrays["feature_scale"], dtype=np.float32).reshape(-1)
    center = (np.asarray(arrays["feature_center"], dtype=np.float32).reshape(-1) if "feature_center" in arrays.files
              else np.zeros_like(scale))
    if scale.shape != x.shape[1:] or center.shape != x.shape[1:]:
        raise DataError(f"{path}: feature_scale and feature_center need {x.shape[1]} values, one a feature")
    if not (np.isfinite(scale).all() and np.isfinite(center).all() and (scale > 0).all()):
        raise DataError(f"{path}: feature_scale must be finite and > 0, feature_center finite")
    return FeatureScaling(center, scale, source="file")


def _scan_images(root: Path) -> list[str]:
    """Image files below ``root`` as '/'-separated relative paths, in path-component order.

    Plain strings from ``os.scandir`` (a ``Path`` object per file cost ~0.5 KB,
    more than the batches being scored on a 200,000-image folder), walked depth
    first with each folder's entries sorted by name, which yields component
    order without sorting the whole list.  Hidden names (leading dot) are
    skipped, as they are for class folders; symlinked folders are not followed
    (no cycles); a symlinked file is kept only when its target is inside
    ``root`` too: the items of a dataset are served to annotators (Label
    Studio), and a link to ``/etc/passwd`` or to the server's own token must
    never become one.
    """
    keys: list[str] = []
    inside = os.path.realpath(root) + os.sep
    outside: list[str] = []

    def walk(directory: str, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            log.warning("skipping unreadable folder %s: %s", directory, exc)
            return
        for entry in entries:
            if entry.name.startswith("."):  # .ipynb_checkpoints, macOS ._* files: never items
                continue
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path, prefix + entry.name + "/")
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
                if entry.is_symlink() and not os.path.realpath(entry.path).startswith(inside):
                    outside.append(prefix + entry.name)
                    continue
                keys.append(prefix + entry.name)

    walk(str(root), "")
    if outside:
        log.warning("skipping %d symlink(s) whose target is outside %s (e.g. %s)", len(outside), root, outside[0])
    return keys


def _folder_pool(root: Path, class_names: Sequence[str] | None, mode: str | None = None,
                 size: tuple[int, int] | None = None) -> FolderPool:
    from PIL import Image, UnidentifiedImageError

    subdirs = sorted(d.name for d in root.iterdir()  # linked folders are not walked: not classes either
                     if d.is_dir() and not d.is_symlink() and not d.name.startswith("."))
    keys = _scan_images(root)
    labelled = bool(subdirs) and all("/" in key for key in keys)
    names = list(class_names) if class_names else (subdirs if labelled else [])
    if not keys:
        raise DataError(f"no images found in {root}")
    if not names:
        raise DataError(f"{root}: images are not in one sub-folder per class; pass --classes")
    readable: list[str] = []
    for key in keys:
        path = os.path.join(root, key)
        try:
            with Image.open(path) as img:
                img.verify()  # header and structure; cheap, no full decode
                if mode is None:
                    mode = "L" if img.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                    size = img.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("skipping unreadable image %s: %s", path, exc)  # a decompression bomb is skipped too
            continue
        readable.append(key)
    if not readable:
        raise DataError(f"none of the {len(keys)} images in {root} could be read")
    skipped = len(keys) - len(readable)
    del keys
    if skipped:
        log.warning("%d unreadable image(s) skipped in %s", skipped, root)
    targets = None
    if labelled:
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted({key.split("/", 1)[0] for key in readable} - set(index))
        if unknown:
            raise DataError(f"{root}: sub-folder(s) {', '.join(unknown)} not among the classes")
        targets = np.fromiter((index[key.split("/", 1)[0]] for key in readable), dtype=np.int64, count=len(readable))
    assert mode is not None and size is not None
    return FolderPool(root, readable, names, targets, mode, size)


def _load_folder(spec: str, root: Path, class_names: Sequence[str] | None) -> Dataset:
    if not root.is_dir():
        raise DataError(f"folder: expects a directory of images, got {root}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        pool = _folder_pool(root / "train", class_names)
        test = _folder_pool(root / "test", pool.class_names, mode="L" if pool.input_shape[0] == 1 else "RGB",
                            size=(pool.input_shape[2], pool.input_shape[1]))
        return Dataset(spec, pool, test)
    return Dataset(spec, _folder_pool(root, class_names), None)

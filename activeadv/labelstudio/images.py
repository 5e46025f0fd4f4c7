"""How an item is shown to annotators: the ``data.image`` reference of its task.

Two ways, chosen per pool: an image folder below the server's local-files root is served by Label
Studio from disk (``local_file_url``: small tasks, full-resolution images), anything else (in-memory
pools such as digits, IDX, npz, or a folder the server cannot reach) is inlined as a PNG data URI.
Pools are duck-typed (``root``, ``path_of``, ``load``, ``is_image``) so that this module needs no torch.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from activeadv.errors import LabelStudioError

log = logging.getLogger(__name__)


def png_data_uri(pixels: np.ndarray, *, min_size: int = 64) -> str:
    """An in-memory image as a ``data:image/png;base64,...`` URI, upscaled nearest-neighbour.

    ``pixels``: ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)`` (channels first, as a
    ``Pool`` loads them) or ``(H, W, 3)``; float in [0, 1] or uint8.  Images whose
    shorter side is below ``min_size`` are enlarged by an integer factor with
    nearest-neighbour sampling so that an 8x8 digit becomes a visible 64x64
    block image, not a blur.  Label Studio stores the URI verbatim in the task,
    so keep this to small images (MNIST-sized: about 1 KB each).
    """
    from PIL import Image

    arr = np.asarray(pixels)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise LabelStudioError(f"cannot render an image of shape {np.asarray(pixels).shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    short = min(arr.shape[0], arr.shape[1])
    factor = max(1, math.ceil(min_size / max(short, 1)))
    if factor > 1:
        arr = arr.repeat(factor, axis=0).repeat(factor, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def local_file_url(path: Path | str, files_root: Path | str) -> str:
    """The URL under which Label Studio's local-files serving shows ``path``.

    ``files_root`` is the server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``;
    the project also needs a Local Files storage over the image folder
    (``ensure_local_storage``), or the image answers 404.
    """
    path = Path(path).expanduser().resolve()
    root = Path(files_root).expanduser().resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise LabelStudioError(f"{path} is outside Label Studio's local files root {root}; "
                               "start the server with --files-root covering it") from None
    return "/data/local-files/?d=" + quote(rel.as_posix(), safe="/")


def served_from_disk(pool: Any, files_root: Path | str | None) -> bool:
    """True when ``pool`` is an image folder below ``files_root`` (Label Studio can serve its files)."""
    root = getattr(pool, "root", None)
    if files_root is None or root is None or not hasattr(pool, "path_of"):
        return False
    try:
        Path(root).expanduser().resolve().relative_to(Path(files_root).expanduser().resolve())
    except ValueError:
        return False
    return True


def pool_image_refs(pool: Any, item_ids: Sequence[int], *, files_root: Path | str | None = None,
                    min_size: int = 64) -> dict[int, str]:
    """``item_id -> image reference`` for a ``data.Pool`` (duck-typed: no torch import here).

    Folder pools (``path_of``) below ``files_root`` become local-file URLs;
    in-memory pools (digits, IDX, npz), and folders Label Studio cannot serve,
    become inline PNG data URIs.
    """
    ids = [int(i) for i in item_ids]
    if served_from_disk(pool, files_root):
        return {i: local_file_url(pool.path_of(i), files_root) for i in ids}  # type: ignore[arg-type]
    if hasattr(pool, "path_of") and files_root is not None:
        log.warning("image folder %s is outside Label Studio's files root %s: sending images inline",
                    getattr(pool, "root", "?"), files_root)
    if not getattr(pool, "is_image", True):
        raise LabelStudioError("this dataset holds feature vectors, not images: annotators could not see them")
    from activeadv.data import stream  # torch, only when images are rendered

    out: dict[int, str] = {}
    for chunk, x in stream(pool, ids, 256):
        for item_id, px in zip(chunk, x.numpy()):
            out[int(item_id)] = png_data_uri(px, min_size=min_size)
    return out

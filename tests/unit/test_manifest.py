"""Manifest datasets: paths relative to the manifest, labels, splits, hash column, one-line errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activeadv.data import load_dataset
from activeadv.errors import DataError
from activeadv.manifest import ManifestPool, content_hash


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.fromarray(np.full((6, 5), i * 20, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_relative_paths_labels_and_splits(tmp_path):
    _images(tmp_path / "img", 5)
    manifest = _write(tmp_path / "m.csv", "path,label,split\nimg/img0.png,cat,pool\nimg/img1.png,dog,pool\n"
                      "img/img2.png,cat,\nimg/img3.png,dog,test\nimg/img4.png,cat,test\n")
    ds = load_dataset(f"manifest:{manifest}")
    assert isinstance(ds.pool, ManifestPool)
    assert ds.class_names == ["cat", "dog"]
    assert ds.pool.keys == ["img/img0.png", "img/img1.png", "img/img2.png"]  # the path as written
    assert ds.pool.input_shape == (1, 6, 5)
    np.testing.assert_array_equal(ds.pool.targets(ds.pool.ids), [0, 1, 0])
    assert ds.test is not None and len(ds.test) == 2
    np.testing.assert_allclose(ds.pool.load([1]).numpy()[0, 0], np.full((6, 5), 20 / 255.0), rtol=1e-6)
    assert ds.pool.fingerprint(0) == content_hash(tmp_path / "img" / "img0.png")


def test_unlabeled_uri_column_absolute_paths_and_hash_column(tmp_path):
    paths = _images(tmp_path / "img", 3)
    rows = "".join(f"file://{p},h{i}\n" if i == 0 else f"{p},h{i}\n" for i, p in enumerate(paths))
    (tmp_path / "sub").mkdir()
    manifest = _write(tmp_path / "sub" / "m.csv", "uri,hash\n" + rows)
    ds = load_dataset(f"manifest:{manifest}", class_names=["a", "b"])
    assert not ds.pool.has_targets and ds.test is None
    assert [ds.pool.fingerprint(i) for i in range(3)] == ["h0", "h1", "h2"]  # taken from the manifest, no read
    assert ds.pool.load([0, 2]).shape == (2, 1, 6, 5)


def test_unreadable_file_is_zero_filled_like_a_folder(tmp_path):
    _images(tmp_path, 2)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    manifest = _write(tmp_path / "m.csv", "path\nimg0.png\nbad.png\nimg1.png\n")
    ds = load_dataset(f"manifest:{manifest}", class_names=["x"])
    x = ds.pool.load(ds.pool.ids)
    assert float(x[1].abs().sum()) == 0.0 and ds.pool.unreadable == {1}


@pytest.mark.parametrize(("text", "message"), [
    ("path,label\nimg0.png,cat\nmissing.png,cat\n", r"row 3: file not found: missing\.png$"),
    ("name,label\nimg0.png,cat\n", r"no 'path' or 'uri' column \(columns: name, label\)$"),
    ("path,label\nimg0.png,cat\nimg1.png,bird\n", r"label\(s\) bird not among the classes cat, dog$"),
    ("path\nnosuchscheme-xyz://bucket/a.png\n", r"row 2: .*nosuchscheme-xyz"),
    ("path,split\nimg0.png,train\n", r"row 2: split 'train' is not pool or test$"),
    ("path\nimg0.png\nimg0.png\n", r"row 3: 'img0\.png' is listed twice"),
])
def test_bad_input_is_one_line_data_error(tmp_path, text, message):
    _images(tmp_path, 2)
    manifest = _write(tmp_path / "m.csv", text)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(f"manifest:{manifest}", class_names=["cat", "dog"])
    assert "\n" not in str(info.value)


def test_missing_manifest_and_missing_classes(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        load_dataset(f"manifest:{tmp_path / 'nope.csv'}")
    _images(tmp_path, 1)
    manifest = _write(tmp_path / "m.csv", "path\nimg0.png\n")
    with pytest.raises(DataError, match="pass --classes"):
        load_dataset(f"manifest:{manifest}")


def test_parquet_manifest(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet manifests need pyarrow (optional)")
    import pyarrow.parquet as pq

    _images(tmp_path, 2)
    pq.write_table(pa.table({"path": ["img0.png", "img1.png"], "label": ["a", "b"]}), tmp_path / "m.parquet")
    ds = load_dataset(f"manifest:{tmp_path / 'm.parquet'}")
    assert ds.class_names == ["a", "b"] and len(ds.pool) == 2

"""Dataset specs: IDX (plain and gzip), npz, image folders (corrupt files skipped), bad input."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activeadv.data import load_dataset, read_idx
from activeadv.errors import DataError

MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (30, 5, 4)), rng.integers(0, 3, 30)
    tx, ty = rng.integers(0, 256, (6, 5, 4)), np.array([0, 1, 2, 0, 1, 2])
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", x, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", y, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", tx, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", ty, gz)
    ds = load_dataset(f"idx:{tmp_path}")
    assert len(ds.pool) == 30 and len(ds.test) == 6
    assert ds.pool.input_shape == (1, 5, 4)
    np.testing.assert_allclose(ds.pool.load([3]).numpy()[0, 0], x[3] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.pool.targets(ds.pool.ids), y)


def test_truncated_idx_is_a_data_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    _write_idx(path, np.zeros((4, 3, 3)), gz=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="expected 36 values"):
        read_idx(path)


@pytest.mark.skipif(not MNIST.exists(), reason="shared MNIST not present")
def test_reads_shared_mnist_in_place():
    ds = load_dataset(f"idx:{MNIST}")
    assert len(ds.pool) == 60000 and len(ds.test) == 10000
    assert ds.pool.input_shape == (1, 28, 28)
    assert ds.pool.targets([0])[0] == 5  # the famous first MNIST training digit


def test_npz_with_and_without_labels(tmp_path):
    x = np.random.default_rng(0).random((10, 6)).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(10) % 2, class_names=np.array(["cat", "dog"]))
    ds = load_dataset(f"npz:{tmp_path / 'a.npz'}")
    assert ds.class_names == ["cat", "dog"] and ds.pool.clip_range is None and ds.pool.input_shape == (6,)
    np.savez(tmp_path / "b.npz", x=x)
    with pytest.raises(DataError, match="--classes"):
        load_dataset(f"npz:{tmp_path / 'b.npz'}")
    assert not load_dataset(f"npz:{tmp_path / 'b.npz'}", class_names=["a", "b"]).pool.has_targets


def test_npz_feature_vectors_are_standardized_by_the_pool_in_any_units(tmp_path):
    rng = np.random.default_rng(1)
    x, x_test = rng.normal(size=(200, 4)), rng.normal(size=(50, 4))
    x[:, 3] = 7.0  # a constant feature
    units, offset = np.array([0.01, 1.0, 1000.0, 5.0]), np.array([3.0, -2.0, 1e5, 0.0])
    np.savez(tmp_path / "one.npz", x=x, y=np.arange(200) % 2, x_test=x_test, y_test=np.arange(50) % 2)
    np.savez(tmp_path / "other.npz", x=x * units + offset, y=np.arange(200) % 2,
             x_test=x_test * units + offset, y_test=np.arange(50) % 2)
    one, other = load_dataset(f"npz:{tmp_path / 'one.npz'}"), load_dataset(f"npz:{tmp_path / 'other.npz'}")
    pool = other.pool.load(other.pool.ids).numpy()
    np.testing.assert_allclose(pool[:, :3].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(pool[:, :3].std(0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(pool[:, 3], 0.0)  # centred, scale 1: no division by zero
    # the test split is put in the pool's units (not its own), and the units the file used do not matter (but for a
    # feature constant over the pool: it has no spread to measure them by)
    expected = (x_test[:, :3] - x[:, :3].mean(0)) / x[:, :3].std(0)
    np.testing.assert_allclose(other.test.load(other.test.ids).numpy()[:, :3], expected, atol=1e-3)
    np.testing.assert_allclose(other.test.load(other.test.ids).numpy()[:, :3],
                               one.test.load(one.test.ids).numpy()[:, :3], atol=1e-3)
    assert other.pool.fingerprint(5) != one.pool.fingerprint(5)  # fingerprints read the stored values


def test_npz_file_can_set_its_own_feature_units(tmp_path):
    x = np.random.default_rng(2).random((20, 3)).astype(np.float32)
    np.savez(tmp_path / "kept.npz", x=x, y=np.arange(20) % 2, feature_scale=np.ones(3))
    kept = load_dataset(f"npz:{tmp_path / 'kept.npz'}").pool
    np.testing.assert_array_equal(kept.load(kept.ids).numpy(), x)  # as stored
    np.savez(tmp_path / "set.npz", x=x, y=np.arange(20) % 2, feature_scale=[2.0, 4.0, 8.0], feature_center=[1, 0, 0])
    given = load_dataset(f"npz:{tmp_path / 'set.npz'}").pool
    np.testing.assert_allclose(given.load(given.ids).numpy(), (x - [1, 0, 0]) / [2.0, 4.0, 8.0], rtol=1e-6)
    for bad in ([1.0, 0.0, 1.0], [1.0, 1.0]):
        np.savez(tmp_path / "bad.npz", x=x, y=np.arange(20) % 2, feature_scale=bad)
        with pytest.raises(DataError, match="feature_scale"):
            load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_feature_problems_are_data_errors(tmp_path):
    x = np.ones((6, 3))
    x[2, 1] = np.inf
    np.savez(tmp_path / "inf.npz", x=x, y=np.arange(6) % 2)
    with pytest.raises(DataError, match="NaN or infinite"):
        load_dataset(f"npz:{tmp_path / 'inf.npz'}")
    np.savez(tmp_path / "mismatch.npz", x=np.ones((6, 3)), y=np.arange(6) % 2, x_test=np.ones((2, 4)),
             y_test=np.array([0, 1]))
    with pytest.raises(DataError, match="3 features does not fit"):
        load_dataset(f"npz:{tmp_path / 'mismatch.npz'}")


def test_image_folder_by_class_skips_corrupt_images(tmp_path, caplog):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((12, 10), 40 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image at all")
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ["cat", "dog"]
    assert len(ds.pool) == 6 and "dog/broken.png" not in ds.pool.keys
    assert "broken.png" in caplog.text
    assert ds.pool.input_shape == (1, 12, 10)  # (C, H, W) of a 12-row image
    batches = list(ds.pool.batches(ds.pool.ids, 4))
    assert [len(ids) for ids, _ in batches] == [4, 2]
    assert ds.pool.key_of(0) == "cat/0.png"


def test_folder_fingerprint_finds_same_content(tmp_path):
    (tmp_path / "a").mkdir()
    img = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    img.save(tmp_path / "a" / "one.png")
    img.save(tmp_path / "a" / "two.png")
    pool = load_dataset(f"folder:{tmp_path}").pool
    assert pool.fingerprint(0) == pool.fingerprint(1)


@pytest.mark.parametrize("spec, message", [
    ("mnist", "unknown dataset"),
    ("idx:/no/such/dir", "not found"),
    ("folder:", "needs a path"),
])
def test_bad_specs(spec, message):
    with pytest.raises(DataError, match=message):
        load_dataset(spec)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_dataset(f"folder:{tmp_path}")


def test_subset_is_a_view_under_the_same_ids(tmp_path):
    pool = load_dataset("digits").pool.with_ids(np.arange(500, 500 + 1257))
    view = pool.subset([510, 503])
    assert len(view) == 2 and list(view.ids) == [510, 503]
    assert view.keys == [pool.key_of(510), pool.key_of(503)]
    np.testing.assert_array_equal(view.targets([503, 510]), pool.targets([503, 510]))
    assert torch_equal(view.load([510]), pool.load([510]))
    with pytest.raises(DataError, match="unknown item id 504"):
        view.load([504])
    renamed = view.with_ids([1, 2])
    assert renamed.key_of(1) == pool.key_of(510) and renamed.targets([2])[0] == pool.targets([503])[0]


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_folder_keys_follow_path_component_order(tmp_path):
    """Item order is the sorted order of path components ('a/z' before 'a-b/x', unlike a plain string sort);
    hidden files and folders are not items."""
    for rel in ("a-b/x.png", "a/z.png", "a/sub/y.png", "b/0.PNG", "b/notes.txt", "a/._z.png", ".cache/c/1.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("txt"):
            (tmp_path / rel).write_text("not an image")
        else:
            Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / rel, format="PNG")
    pool = load_dataset(f"folder:{tmp_path}").pool
    relative = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.suffix.lower() == ".png"]
    expected = sorted(p for p in relative if not any(part.startswith(".") for part in p.parts))
    assert pool.keys == [p.as_posix() for p in expected]
    assert pool.keys[:2] == ["a/sub/y.png", "a/z.png"] and pool.class_names == ["a", "a-b", "b"]  # hidden: skipped
    assert pool.path_of(pool.ids[-1]) == tmp_path / "b" / "0.PNG"


def test_positions_under_sparse_ids():
    pool = load_dataset("digits").pool
    ids = np.arange(len(pool)) * 7 + 1_000_003  # database keys: sparse, large
    renamed = pool.with_ids(ids[::-1].copy())
    np.testing.assert_array_equal(renamed.positions(ids[::-1][[5, 0, 9]]), [5, 0, 9])
    assert renamed.key_of(int(ids[-1])) == pool.key_of(0)
    for bad in ([0], [int(ids.max()) + 7], [int(ids[3]) + 1]):
        with pytest.raises(DataError, match="unknown item id"):
            renamed.positions(bad)
    with pytest.raises(DataError, match="unique"):
        pool.with_ids(np.zeros(len(pool), dtype=np.int64))


def test_symlinks_out_of_the_dataset_never_become_items(tmp_path, caplog):
    """A link to a file outside the folder (here an image; /etc/passwd would do) would be served to annotators."""
    root, elsewhere = tmp_path / "data", tmp_path / "secret"
    for d in (root / "a", root / "b", elsewhere):
        d.mkdir(parents=True)
    for name, value in (("a/1.png", 10), ("b/1.png", 200)):
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(root / name)
    Image.fromarray(np.full((8, 8), 99, dtype=np.uint8)).save(elsewhere / "private.png")
    (root / "a" / "leak.png").symlink_to(elsewhere / "private.png")
    (root / "b" / "inside.png").symlink_to(root / "a" / "1.png")  # a link within the dataset is fine
    (root / "c").symlink_to(elsewhere, target_is_directory=True)  # a linked folder is never walked
    with caplog.at_level("WARNING"):
        pool = load_dataset(f"folder:{root}").pool
    assert sorted(pool.keys) == ["a/1.png", "b/1.png", "b/inside.png"] and pool.class_names == ["a", "b"]
    assert "outside" in caplog.text and "a/leak.png" in caplog.text


def test_a_decompression_bomb_is_skipped_with_a_warning(tmp_path, caplog, monkeypatch):
    for name, value in (("a/1.png", 10), ("b/1.png", 200)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(tmp_path / name)
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(tmp_path / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 = 4096 > 2x the limit: PIL refuses to open it
    with caplog.at_level("WARNING"):
        pool = load_dataset(f"folder:{tmp_path}").pool
    assert sorted(pool.keys) == ["a/1.png", "b/1.png"] and "bomb.png" in caplog.text


def test_chunks_slices_any_sequence_in_order():
    import torch

    from activeadv.data import chunks

    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    arr = np.arange(6)
    parts = list(chunks(arr, 2))
    assert all(p.base is arr for p in parts)  # views, no copies
    assert [t.shape[0] for t in chunks(torch.zeros(5, 2), 4)] == [4, 1]
    assert list(chunks([], 3)) == []
    with pytest.raises(ValueError):
        list(chunks([1], 0))


def test_stream_is_one_pass_over_the_ids_in_batches():
    from activeadv.data import ArrayPool, stream

    pool = ArrayPool(np.arange(40, dtype=np.float32).reshape(10, 4) / 40, ["a", "b"]).with_ids(np.arange(100, 110))
    order = np.array([109, 100, 105, 101, 102, 108, 103])
    batches = list(stream(pool, order, 3, device="cpu", desc="test"))
    assert [list(ids) for ids, _ in batches] == [[109, 100, 105], [101, 102, 108], [103]]
    np.testing.assert_array_equal(np.concatenate([x.numpy() for _, x in batches]), pool.load(order).numpy())
    assert list(stream(pool, [], 3)) == []


def test_loaded_batches_have_one_layout_however_the_array_was_built():
    """An (N, H, W) array becomes (N, 1, H, W) through a[:, None], whose size-1 channel axis torch reads as
    channels-last, and its pickled copy as row-major; loads always come back channels-last with the same strides,
    so the copy trains the same model; feature vectors stay row-major."""
    import pickle

    import torch

    from activeadv.data import ArrayPool

    images = np.random.default_rng(0).random((10, 8, 8), dtype=np.float32)
    pool = ArrayPool(images, ["a", "b"])
    copy = pickle.loads(pickle.dumps(pool))
    for p in (pool, copy):
        x = p.load(p.ids[:4])
        assert x.shape == (4, 1, 8, 8) and x.stride() == (64, 1, 8, 1)
    assert torch.equal(pool.load(pool.ids), copy.load(copy.ids))
    uint8 = ArrayPool((images * 255).astype(np.uint8), ["a", "b"])
    assert uint8.load(uint8.ids[:3]).stride() == (64, 1, 8, 1)
    rgb = ArrayPool(np.random.default_rng(0).random((5, 3, 4, 4), dtype=np.float32), ["a", "b"])
    x = rgb.load(rgb.ids)
    assert x.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, torch.from_numpy(rgb._array))
    vectors = ArrayPool(np.random.default_rng(0).random((5, 7), dtype=np.float32), ["a", "b"])
    assert vectors.load(vectors.ids).stride() == (7, 1)

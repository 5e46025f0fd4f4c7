"""`activeadv init` on an image folder: registration is idempotent, grows with the folder, follows renames."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from PIL import Image

from activeadv.cli import cli
from activeadv.records import Annotation
from activeadv.store import Store


def _png(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def _init(url: str, folder) -> str:
    result = CliRunner().invoke(cli, ["init", "shapes", "--dataset", f"folder:{folder}", "--db", url, "-q"])
    assert result.exit_code == 0, result.output
    return result.output


def test_init_registers_only_new_files_and_keeps_ids_of_renamed_ones(tmp_path, database_url):
    folder = tmp_path / "shapes"
    for i in range(4):
        _png(folder / "train" / "dark" / f"{i}.png", 10 + i)
        _png(folder / "train" / "light" / f"{i}.png", 200 + i)
    for i in range(2):
        _png(folder / "test" / "dark" / f"{i}.png", 20 + i)
        _png(folder / "test" / "light" / f"{i}.png", 220 + i)
    assert "pool 8 items (+8 new), test 4 items (+4 new)" in _init(database_url, folder)
    assert "pool 8 items (+0 new), test 4 items (+0 new)" in _init(database_url, folder)

    with Store.open(database_url) as store:
        p = store.get_project("shapes")
        assert p.class_names == ("dark", "light")
        before = store.item_keys(p.id)
        store.add_labels(p.id, [Annotation(before["dark/0.png"], "dark", "import", external_id="x")])

    _png(folder / "train" / "light" / "new.png", 250)
    (folder / "train" / "dark" / "0.png").rename(folder / "train" / "dark" / "zero.png")
    assert "pool 9 items (+1 new, 1 renamed)" in _init(database_url, folder)
    with Store.open(database_url) as store:
        p = store.get_project("shapes")
        after = store.item_keys(p.id)
        assert after["dark/zero.png"] == before["dark/0.png"] and "dark/0.png" not in after
        ids, classes = store.labels(p.id)
        assert list(ids) == [before["dark/0.png"]]  # the label followed the renamed file

    result = CliRunner().invoke(cli, ["init", "shapes", "--dataset", "digits", "--db", database_url])
    assert result.exit_code == 1 and "uses dataset" in result.output

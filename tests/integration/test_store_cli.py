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


def test_labels_export_neutralises_formulas_and_reimports_them(tmp_path, database_url):
    """OWASP CSV injection: a key or annotator starting with = + - @ must not run in a spreadsheet,
    and the escaped export still imports back to the same labels."""
    import csv

    folder = tmp_path / "evil"
    _png(folder / "=cmd|calc" / "0.png", 10)  # a class (and so a key and a label) that reads as a formula
    _png(folder / "plain" / "+1+1.png", 200)
    _init_named(database_url, folder)
    with Store.open(database_url) as store:
        p = store.get_project("evil")
        keys = store.item_keys(p.id)
        assert set(keys) == {"=cmd|calc/0.png", "plain/+1+1.png"}, keys
        store.add_labels(p.id, [Annotation(keys["=cmd|calc/0.png"], "=cmd|calc", "import", annotator="@SUM(A1)",
                                           external_id="-2+3")])
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(cli, ["labels", "export", str(out), "--db", database_url])
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader(out.open()))
    assert (row["key"], row["label"]) == ("'=cmd|calc/0.png", "'=cmd|calc")
    assert row["annotator"] == "'@SUM(A1)" and row["external_id"] == "'-2+3"
    assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())
    url2 = f"sqlite:///{tmp_path / 'again.db'}"  # a fresh database: the export imports to the same label
    _init_named(url2, folder)
    result = CliRunner().invoke(cli, ["labels", "import", str(out), "--db", url2])
    assert result.exit_code == 0, result.output
    with Store.open(url2) as store:
        p = store.get_project("evil")
        (label,) = store.label_rows(p.id)
        assert (label.key, label.label, label.annotator, label.external_id) == (
            "=cmd|calc/0.png", "=cmd|calc", "@SUM(A1)", "-2+3")


def test_labels_export_to_an_unwritable_path_is_one_line(tmp_path, database_url):
    _init_named(database_url, _two_pngs(tmp_path / "imgs"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli, ["labels", "export", str(blocker / "out.csv"), "--db", database_url])
    assert result.exit_code == 1 and "cannot write" in result.output and "Traceback" not in result.output


def _init_named(url: str, folder, name: str = "evil") -> None:
    result = CliRunner().invoke(cli, ["init", name, "--dataset", f"folder:{folder}", "--db", url, "-q"])
    assert result.exit_code == 0, result.output


def _two_pngs(folder):
    _png(folder / "train" / "a" / "0.png", 10)
    _png(folder / "train" / "b" / "0.png", 200)
    return folder


def test_concurrent_inits_on_an_empty_database_create_one_project_and_never_a_traceback(database_url, tmp_path):
    """Three `init`s at once on a brand-new database (PostgreSQL raced on creating alembic_version, then on the
    items): each one succeeds or says in one line that another process holds the project; items exist once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ACTIVEADV_DATABASE_URL": database_url}
    procs = [subprocess.Popen([sys.executable, "-c", "from activeadv.cli import main; main()", "init", "race",
                               "--dataset", "digits", "-q"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for code, out, err in results:
        assert "Traceback" not in err, err
        assert code == 0 or (code == 1 and "already running on this project" in err), (code, out, err)
    assert any(code == 0 for code, _, _ in results)
    with Store.open(database_url) as store:
        [project] = store.projects()
        assert store.status(project.id).pool == 1257  # every digits image once

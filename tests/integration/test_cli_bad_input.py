"""Bad numbers and bad files give one line and a non-zero exit, never a traceback (issue 11's fault list)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from activeadv.cli import cli


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    result = CliRunner().invoke(cli, ["init", "demo", "--dataset", "digits", "-q", "--db", url])
    assert result.exit_code == 0, result.output
    return url


@pytest.mark.parametrize("args, says", [
    (["round", "--query-size", "100000000000000000000", "--oracle", "none"], "--query-size"),
    (["round", "--lr", "nan", "--oracle", "none"], "--lr must be a number"),
    (["round", "--lr", "-1", "--oracle", "none"], "--lr must be > 0"),
    (["round", "--epsilon", "inf", "--oracle", "none"], "--epsilon must be a number"),
    (["round", "--seed", "-1", "--oracle", "none"], "--seed"),
    (["run", "--rounds", "1", "--poll-seconds", "nan", "--oracle", "none"], "--poll-seconds"),
    (["run", "--rounds", "1", "--timeout", "nan", "--oracle", "none"], "--timeout"),
    (["run", "--rounds", "-1", "--oracle", "none"], "--rounds"),
])
def test_bad_numbers_are_one_line_errors(db, args, says):
    result = CliRunner().invoke(cli, [*args, "--db", db])
    assert result.exit_code in (1, 2), result.output
    assert says in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # handled, not a crash


@pytest.mark.parametrize("args", [["bench", "round", "--dataset", "digits", "--rounds", "-1"],
                                  ["labelstudio", "start", "--port", "70000"],
                                  ["simulate", "--budget", "0"]])
def test_bad_counts_are_refused_before_any_work(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "is not in the range" in result.output


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not SQLite\n" * 100)
    result = CliRunner().invoke(cli, ["status", "--db", f"sqlite:///{text}"])
    assert result.exit_code == 1 and "not a database" in result.output
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    assert text.read_text() == "this is not SQLite\n" * 100  # nothing written to it


def test_init_with_label_studio_down_says_unreachable_and_stores_nothing(tmp_path, monkeypatch):
    import socket

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("ACTIVEADV_HOME", str(tmp_path / "home"))  # no local server to borrow a token from
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "p.db"
    result = CliRunner().invoke(cli, ["init", "demo", "--dataset", "digits", "-q", "--db", f"sqlite:///{db}",
                                      "--label-studio", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1 and "unreachable" in result.output and "token" not in result.output
    assert not db.exists()  # no project, not even an empty database


def test_simulate_checks_its_database_before_any_training(tmp_path):
    """It used to train for ten minutes and then fail on a --db that did not exist."""
    missing = tmp_path / "nope" / "x.db"
    result = CliRunner().invoke(cli, ["simulate", "--dataset", "digits", "--db", f"sqlite:///{missing}", "-q",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not (tmp_path / "out" / "points.jsonl").exists()  # refused before the first round was logged

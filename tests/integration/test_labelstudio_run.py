"""`round`, `run` and `status` on a project linked to a real Label Studio (issue 4), through ``CliRunner``.

Small and fast on purpose: digits, one epoch (``--min-steps 15``), 4-6 items per round, the entropy strategy
(DFAL's scoring has its own tests); the server is the one of ``LABEL_STUDIO_URL`` (scripts/test.sh starts it).
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from ls_gate import TOKEN, URL  # noqa: E402  (the gate: skip, or fail in CI)

from activeadv import labelstudio as L
from activeadv.cli import cli
from activeadv.labelstudio.client import _as_dict

FAST = ("--epochs", "1", "--min-steps", "15", "--unlabeled-steps", "15", "--strategy", "entropy", "-q")

pytestmark = pytest.mark.labelstudio


@pytest.fixture()
def linked(cli_env):
    """A digits project linked to the server at init; the Label Studio project is deleted afterwards."""
    from activeadv.store import Store

    run("init", "demo", "--dataset", "digits", "--label-studio", URL, "-q")  # type: ignore[arg-type]
    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
        ls_pid = store.get_project().ls_project_id
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    yield client, ls_pid
    client.sdk.projects.delete(ls_pid)


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _status():
    from activeadv.store import Store

    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
        project = store.get_project()
        return store.status(project.id)


def test_round_on_a_linked_project_pushes_tasks_with_predictions(linked):
    """No --oracle: a linked project's round syncs, trains, ranks and pushes to Label Studio."""
    client, ls_pid = linked
    out = run("round", "--initial", "6", "--query-size", "4", *FAST).output
    assert "round 0 (seed): requested 6" in out and "sent to Label Studio" in out
    assert client.project_counts(ls_pid) == {"tasks": 6, "open": 6, "annotated": 0, "skipped": 0}

    out = run("annotate-sim", "--accuracy", "1.0", "-q").output
    assert "answered 6 task(s)" in out
    out = run("round", "--initial", "6", "--query-size", "4", *FAST).output
    assert "round 1: trained on 6 labels" in out and "requested 4 item(s) (sent to Label Studio)" in out
    tasks = [_as_dict(t) for t in client.sdk.tasks.list(project=ls_pid, fields="all")]
    assert len(tasks) == 10
    newest = [t for t in tasks if t["predictions"] and t["predictions"][0]["model_version"] == "1"]
    assert len(newest) == 4  # the model's guess is pre-filled for the annotators
    assert all(t["predictions"][0]["result"][0]["value"]["choices"][0] in [str(d) for d in range(10)]
               for t in newest)

    out = run("status").output
    assert f"Label Studio project {ls_pid}: 10 tasks: 4 open, 6 annotated, 0 skipped" in out
    assert f"{URL}/projects/{ls_pid}/data" in out
    payload = json.loads(run("status", "--json").output)
    assert payload["label_studio"]["open"] == 4 and payload["label_studio"]["annotated"] == 6
    assert payload["label_studio"]["error"] is None and TOKEN not in json.dumps(payload)


def test_run_with_the_simulated_annotator_completes_rounds_unattended(linked):
    client, ls_pid = linked
    run("round", "--initial", "6", *FAST)  # seed round: 6 tasks
    out = run("run", "--rounds", "2", "--min-new-labels", "4", "--query-size", "4", "--auto-annotate", "1.0",
              "--poll-seconds", "1", "--timeout", "120", *FAST).output
    assert "round 1: trained on 6 labels" in out and "round 2: trained on 10 labels" in out
    assert "learning curve:" in out
    st = _status()
    assert st.labeled == 10 and st.pending == 4 and [r.number for r in st.rounds] == [0, 1, 2]
    assert [r.labels_used for r in st.rounds[1:]] == [6, 10]
    assert all(r.state == "done" for r in st.rounds)
    assert client.project_counts(ls_pid) == {"tasks": 14, "open": 4, "annotated": 10, "skipped": 0}


def test_run_times_out_in_one_line_and_keeps_what_arrived(linked):
    client, ls_pid = linked
    run("round", "--initial", "5", *FAST)
    [(task_id, _)] = client.open_tasks(ls_pid)[:1]
    client.annotate(task_id, "3")  # one of the five answered: fewer than asked for
    result = run("run", "--rounds", "1", "--min-new-labels", "5", "--poll-seconds", "0.5", "--timeout", "2", *FAST,
                 ok=False)
    assert result.exit_code == 1 and "timed out after 2 s" in result.output and "1 of 5" in result.output
    assert len(result.output.strip().splitlines()) == 1 and TOKEN not in result.output
    st = _status()
    assert st.labeled == 1 and st.pending == 4 and len(st.rounds) == 1  # the label is stored, no round ran


def test_status_says_in_one_line_when_label_studio_is_unreachable(linked, tmp_path):
    import socket

    from activeadv.store import Store

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
        project = store.get_project()
        store.update_project(project.id, ls_url=f"http://127.0.0.1:{port}")
    try:
        out = run("status").output
        lines = [line for line in out.splitlines() if line.startswith("Label Studio")]
        assert len(lines) == 1 and "unreachable" in lines[0]
        assert "pool 1257 items" in out
        assert "unreachable" in json.loads(run("status", "--json").output)["label_studio"]["error"]
    finally:
        with Store.open(os.environ["ACTIVEADV_DATABASE_URL"]) as store:
            store.update_project(store.get_project().id, ls_url=URL)

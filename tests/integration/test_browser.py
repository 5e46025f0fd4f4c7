"""The annotator's flow in a real browser: Debian's Chromium, headless, driven by Playwright for Python.

An annotator logs in to the real Label Studio of ``LABEL_STUDIO_URL``, opens the linked project, opens the first
open task, sees the image with the model's guess (the round's prediction) pre-selected, picks another class and
submits.  ``activeadv serve`` (in-process, as in test_serve.py) gets the webhook: the label is in SQL within a
bounded wait.  After N submitted labels a round runs by itself and its tasks, best first, appear in the data
manager; "Label All Tasks" then opens the best of them with the new model's guess pre-selected.

Needs, beside the server: ``/usr/bin/chromium`` (``apt-get install chromium``; another binary through
``ACTIVEADV_CHROMIUM``), the ``playwright`` package (dev extra; Playwright's own browser download is never
used) and the server's data dir in ``ACTIVEADV_TEST_LS_DATA`` (its ``admin-password`` file: the login).
Skipped with the reason when one is missing, failed instead when ``ACTIVEADV_REQUIRE_LABEL_STUDIO=1`` (CI).

Screenshots of the key steps go to ``$ACTIVEADV_TEST_ARTIFACTS/browser`` (scripts/test.sh: ./test-artifacts),
else to the test's tmp_path; the folder is printed.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ls_gate import TOKEN, URL, require  # noqa: E402  (the gate: skip, or fail in CI)
from waiting import free_port, wait_for  # noqa: E402

from activeadv import labelstudio as L
from activeadv.cli import cli
from activeadv.labelstudio.client import _as_dict

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("ACTIVEADV_CHROMIUM", "/usr/bin/chromium")
# what a root process in a container needs, and no calls out of this closed machine (../shared/labelstudio.md)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SECRET = "browser-test-secret-0123456789"
N_LABELS = 4  # --min-new-labels of the service: the browser submits this many, then a round runs by itself
QUERY = 4
SQL_WAIT = 30.0  # seconds a submitted label may take to reach SQL
ROUND_WAIT = 150.0  # seconds from the N-th label to the next round's tasks in Label Studio
UI_TIMEOUT_MS = 30_000


def fast_training() -> dict[str, Any]:
    """One epoch, few steps, no robustness suite: a round in seconds."""
    return {"epochs": 1, "min_steps": 15, "unlabeled_min_steps": 15, "eval_subset": 0}


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def store():
    from activeadv.store import Store

    return Store.open(os.environ["ACTIVEADV_DATABASE_URL"])


# ----------------------------------------------------------------------------------------------- gates
def browser_problem() -> str | None:
    """Why the browser cannot be driven here, or None."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return (f"needs Chromium at {CHROMIUM} (`apt-get install -y chromium`, as scripts/test.sh does; "
                "or set ACTIVEADV_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright for Python (`pip install -e '.[dev]'`; its own browser download is not used)"
    return None


def admin_login() -> tuple[str, str]:
    """The local server's admin: e-mail of the token's user, password from ``ACTIVEADV_TEST_LS_DATA``."""
    data = os.environ.get("ACTIVEADV_TEST_LS_DATA")
    password_file = Path(data) / "admin-password" if data else None
    require(password_file is not None and password_file.is_file(),
            "needs ACTIVEADV_TEST_LS_DATA: the data dir of the `activeadv labelstudio start` server, whose "
            "admin-password file is the browser's login")
    assert password_file is not None
    _, email = L.connect(URL, TOKEN).whoami()  # type: ignore[arg-type]
    return email, password_file.read_text().strip()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    problem = browser_problem()
    require(problem is None, problem or "")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def artifacts(request, tmp_path) -> Path:
    root = os.environ.get("ACTIVEADV_TEST_ARTIFACTS")
    folder = Path(root) / "browser" if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    print(f"\nscreenshots: {folder}")
    return folder


# --------------------------------------------------------------------------------------- the project
@dataclass
class Project:
    client: Any
    ls_pid: int
    title: str
    class_names: list[str]


@pytest.fixture()
def project(cli_env) -> Iterator[Project]:
    """A digits project linked to Label Studio: a seed round answered by the simulated annotator, round 1 trained
    and its 4 tasks pushed with the model's guesses; the Label Studio project is deleted afterwards."""
    from activeadv.app.rounds import RoundPlan, run_round
    from activeadv.app.workspace import Workspace

    run("init", "demo", "--dataset", "digits", "--label-studio", URL, "-q")  # type: ignore[arg-type]
    run("round", "--initial", "6", "--query-size", str(QUERY), "--strategy", "entropy", "-q")  # seed: no model yet
    run("annotate-sim", "-q")
    with Workspace() as ws:
        run_round(ws, None, RoundPlan(strategy="entropy", query_size=QUERY, device="cpu",
                                      train_overrides=fast_training()))
        info = ws.project()
    ls_pid = int(info.ls_project_id)  # type: ignore[arg-type]
    client = L.connect(URL, TOKEN)  # type: ignore[arg-type]
    title = str(client.sdk.projects.get(ls_pid).title)
    try:
        yield Project(client, ls_pid, title, list(info.class_names))
    finally:
        client.sdk.projects.delete(ls_pid)


class Service:
    """``activeadv serve`` in a thread (uvicorn, worker running), as test_serve.py runs it."""

    def __init__(self) -> None:
        import uvicorn

        from activeadv.service import ServiceConfig
        from activeadv.service.http import build_service, create_app

        self.cfg = ServiceConfig(port=free_port(), min_new_labels=N_LABELS, strategy="entropy", query_size=QUERY,
                                 device="cpu", train_overrides=fast_training(), retry_seconds=1.0)
        self.service = build_service(self.cfg, SECRET)
        self.url = self.cfg.url
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.service), host="127.0.0.1", port=self.cfg.port,
                                                   log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 30, what="the service answers")

    def register(self) -> None:
        """What `activeadv serve --register` does: the project webhook and the ML backend, with the secret."""
        from activeadv.app.webhooks import register
        from activeadv.app.workspace import Workspace
        from activeadv.service.secret import BASIC_USER, HEADER

        with Workspace() as ws:
            register(ws, None, self.url, SECRET, header=HEADER, basic_user=BASIC_USER)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.service.ws.close()


@pytest.fixture()
def service(project) -> Iterator[Service]:
    running = Service()
    try:
        running.register()
        yield running
    finally:
        running.stop()


# ------------------------------------------------------------------------------------------ the page
class Annotator:
    """One annotator's browser tab on Label Studio, with a screenshot after each key step."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.shots: list[Path] = []
        page.set_default_timeout(UI_TIMEOUT_MS)

    def shot(self, name: str) -> Path:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.shots.append(path)
        return path

    def log_in(self, email: str, password: str) -> None:
        page = self.page
        page.goto(f"{URL}/user/login/")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        self.shot("login")
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/user/login" not in u)

    def open_project(self, ls_pid: int, title: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        page = self.page
        page.goto(f"{URL}/projects/")
        card = page.locator(f'a[href^="/projects/{ls_pid}/"]').first
        card.get_by_text(title, exact=True).wait_for()
        try:  # the card's task counts ("done / total") come a moment later
            card.get_by_text(re.compile(r"^\d+ / \d+$")).wait_for(timeout=5_000)
        except PlaywrightTimeout:
            pass
        self.shot("projects")
        card.click()
        page.wait_for_url(lambda u: f"/projects/{ls_pid}/data" in u)
        page.get_by_text("Tasks:").wait_for()

    def total_tasks(self) -> int:
        return int(self.page.locator('span[title="Total tasks in the project"]').inner_text())

    def rows(self) -> list[dict[str, str]]:
        """The data manager's rows as rendered, top to bottom: column (``tasks:id``, ``tasks:data.item_id``...) ->
        the cell's text."""
        columns = self.page.locator(".lsf-table .lsf-th").evaluate_all("hs => hs.map(h => h.dataset.id || '')")
        cells = self.page.locator(".lsf-table__row-wrapper").evaluate_all(
            "rows => rows.map(r => Array.from(r.querySelectorAll('.lsf-table__cell')).map(c => c.innerText.trim()))")
        return [{c: v for c, v in zip(columns, row) if c} for row in cells]

    def open_row(self, index: int, task_id: int) -> None:
        """Click the data manager's row ``index`` (full table or the list beside the editor): task ``task_id``."""
        before = self.image_src()
        self.page.locator(".lsf-table__row-wrapper").nth(index).click()
        self.page.wait_for_url(lambda u: f"task={task_id}" in u)
        self.wait_for_editor(before)
        assert self.task_shown() == task_id

    def task_shown(self) -> int | None:
        """The id of the task in the editor (its bottom bar: "#ID")."""
        text = self.page.locator(".lsf-current-task__task-id").first.evaluate("e => e.firstChild.textContent")
        digits = str(text).strip().lstrip("#")
        return int(digits) if digits.isdigit() else None

    def image_src(self) -> str | None:
        img = self.page.locator("img[alt=image]")
        return img.first.get_attribute("src") if img.count() else None

    def wait_for_editor(self, previous_src: str | None = None) -> None:
        """Until the task's image is shown (a new one when ``previous_src`` is given) and the choices answer."""
        self.page.wait_for_function(
            "prev => { const i = document.querySelector('img[alt=image]');"
            " return i && i.src !== prev && i.complete && i.naturalWidth > 0 }", arg=previous_src)
        self.page.locator(".lsf-choices input[type=checkbox]").first.wait_for()
        self.page.locator(".lsf-current-task__task-id").first.wait_for()

    def guess(self, timeout: float = 10.0) -> list[str]:
        """The pre-selected choices, once the editor has put the prediction in (it follows the image)."""
        deadline = time.monotonic() + timeout
        while not (checked := self.checked()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return checked

    def checked(self) -> list[str]:
        return self.page.locator(".lsf-choices input[type=checkbox]").evaluate_all(
            "boxes => boxes.filter(b => b.checked).map(b => b.name)")

    def choose(self, label: str) -> None:
        self.page.locator(".lsf-choice__checkbox").filter(has=self.page.locator(f'input[name="{label}"]')).click()

    def submit(self) -> float:
        """Click Submit and wait for Label Studio's 201; returns the click's time (monotonic)."""
        page = self.page
        with page.expect_response(lambda r: r.request.method == "POST" and "/annotations" in r.url) as answer:
            clicked = time.monotonic()
            page.get_by_role("button", name="Submit").first.click()
        assert answer.value.status == 201, answer.value.text()
        return clicked


def predicted_by_round(round_number: int, class_names: list[str]) -> list[tuple[int, str]]:
    """``(item_id, guessed class)`` of a round's selection, best first, as the store saved it."""
    with store() as s:
        project = s.get_project()
        rnd = next(r for r in s.rounds(project.id) if r.number == round_number)
        sel = s.selection(rnd.id)
    assert sel.predicted is not None
    return [(int(i), class_names[int(c)]) for i, c in zip(sel.item_ids, sel.predicted)]


def stored_label(item_id: int) -> str | None:
    with store() as s:
        project = s.get_project()
        ids, labels = s.labels(project.id)
        names = project.class_names
    found = [names[int(y)] for i, y in zip(ids, labels) if int(i) == item_id]
    return found[0] if found else None


def task_prediction(client: Any, task_id: int) -> list[str]:
    task = _as_dict(client.sdk.tasks.get(task_id))
    return [c for p in task.get("predictions") or [] for r in p.get("result") or []
            for c in r.get("value", {}).get("choices", [])]


# ------------------------------------------------------------------------------------------- the test
def test_an_annotator_labels_in_the_browser_and_rounds_follow_by_themselves(service, project, chromium, artifacts,
                                                                             record_property, caplog):
    caplog.set_level(logging.INFO, logger="activeadv")
    email, password = admin_login()
    client, ls_pid, names = project.client, project.ls_pid, project.class_names
    guesses = dict(predicted_by_round(1, names))  # round 1's guesses, sent with its tasks
    open_tasks = client.open_tasks(ls_pid)  # oldest first: the data manager's order
    assert len(open_tasks) == QUERY and {i for _, i in open_tasks} == set(guesses)
    with store() as s:
        task_order = sorted(int(t) for r in s.rounds(s.get_project().id) for t in s.task_ids(r.id).values())
        rounds_before = len(s.rounds(s.get_project().id))
    assert len(task_order) == 6 + QUERY and {t for t, _ in open_tasks} <= set(task_order)

    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    browser = Annotator(page, artifacts)
    to_sql: list[float] = []
    try:
        browser.log_in(email, password)
        browser.open_project(ls_pid, project.title)
        assert browser.total_tasks() == 6 + QUERY
        browser.shot("data-manager")

        for k, (task_id, item_id) in enumerate(open_tasks[:N_LABELS]):
            browser.open_row(task_order.index(task_id), task_id)
            guess = guesses[item_id]
            assert browser.guess() == [guess], "the model's guess is not pre-selected"
            assert task_prediction(client, task_id) == [guess]
            if k == 0:
                browser.shot("task-with-the-models-guess")
            other = names[(names.index(guess) + 1) % len(names)]
            browser.choose(other)
            assert browser.checked() == [other]
            if k == 0:
                browser.shot("another-class-chosen")
            clicked = browser.submit()
            wait_for(lambda item=item_id, want=other: stored_label(item) == want, SQL_WAIT, every=0.05,
                     what=f"label {other!r} of item {item_id} in SQL")  # a latency figure: poll finely
            to_sql.append(time.monotonic() - clicked)
            if k == 0:
                browser.shot("submitted")
            if k < N_LABELS - 1:
                with store() as s:  # fewer than N labels: no round yet
                    assert len(s.rounds(s.get_project().id)) == rounds_before
        nth_label = clicked

        expected = 6 + QUERY + QUERY
        wait_for(lambda: client.project_counts(ls_pid)["tasks"] >= expected, ROUND_WAIT, every=0.1,
                 what="the next round's tasks in Label Studio")
        to_tasks = time.monotonic() - nth_label

        # the data manager, reloaded, shows the new tasks, best first (tall enough to render every row)
        page.set_viewport_size({"width": 1400, "height": 1200})
        page.goto(f"{URL}/projects/{ls_pid}/data")
        page.get_by_text("Tasks:").wait_for()
        wait_for(lambda: browser.total_tasks() == expected and len(browser.rows()) == expected, 30,
                 what="the data manager lists the new tasks")
        best_first = predicted_by_round(2, names)
        rows = browser.rows()
        assert [r["tasks:id"] for r in rows] == sorted((r["tasks:id"] for r in rows), key=int)
        new_rows = rows[-QUERY:]  # the newest tasks, in the order they were imported
        assert [int(r["tasks:data.item_id"]) for r in new_rows] == [i for i, _ in best_first]
        assert all(r["tasks:total_predictions"] == "1" and r["tasks:total_annotations"] == "0" for r in new_rows)
        browser.shot("new-tasks-best-first")

        # the annotator's next task is the best one, with the new model's guess pre-selected
        page.set_viewport_size({"width": 1400, "height": 900})
        page.get_by_role("button", name="Label All Tasks").click()
        browser.wait_for_editor()
        with store() as s:
            rnd = s.rounds(s.get_project().id)[-1]
            best_task = int(s.task_ids(rnd.id)[best_first[0][0]])
        assert browser.task_shown() == best_task
        assert browser.guess() == [best_first[0][1]]
        browser.shot("next-task-best-first")
    except Exception:
        browser.shot("failure")
        raise
    finally:
        context.close()

    with store() as s:
        rounds = s.rounds(s.get_project().id)
    assert [r.number for r in rounds] == [0, 1, 2] and rounds[-1].labels_used == 6 + N_LABELS
    assert "refused" not in caplog.text  # every delivery Label Studio made carried the secret
    record_property("submit_to_sql_s", to_sql)
    record_property("nth_label_to_new_tasks_s", to_tasks)
    print(f"\nbrowser: submit -> label in SQL median {statistics.median(to_sql):.2f}s "
          f"({', '.join(f'{t:.2f}' for t in to_sql)}); N-th label -> {QUERY} new tasks {to_tasks:.1f}s "
          f"(round 2: {', '.join(f'{k} {v:.1f}s' for k, v in (rounds[-1].timings or {}).items())}); "
          f"screenshots: {artifacts}")

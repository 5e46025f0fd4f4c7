"""How long annotators wait with ``activeadv serve``: submit -> label in SQL, and N-th label -> new tasks.

Against the real Label Studio of ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (it must be allowed to call
127.0.0.1: ``activeadv labelstudio start`` sets that), in a throw-away work dir:

1. a digits project linked to Label Studio, a seed round answered by the simulated annotator, round 1 trained
   (its tasks carry the model's guesses);
2. a real ``activeadv serve --detach --register`` process (``--min-new-labels N``);
3. ``--rounds R`` times: N open tasks answered through Label Studio's API, one at a time, as an annotator's
   Submit does (Label Studio then sends the same webhook); for each, the time until the label is in SQL; after
   the N-th, the time until the next round's N tasks are in Label Studio.

    LABEL_STUDIO_URL=http://127.0.0.1:8093 LABEL_STUDIO_API_KEY=... \\
        .venv/bin/python scripts/serve_latency.py --rounds 5 --labels 4 --out runs/serve_latency.json

Training options for ``init`` (hence for the service's rounds) go after ``--``, e.g.
``-- --epochs 1 --min-steps 15`` for the round itself to cost little.  The figures go to stdout (and ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {"n": len(ordered), "median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": q[0], "q3": q[2], "values": [round(v, 3) for v in values]}


def line(name: str, s: dict[str, Any]) -> str:
    return (f"{name}: median {s['median']:.2f}s, IQR {s['q1']:.2f}-{s['q3']:.2f}s, min {s['min']:.2f}s, "
            f"max {s['max']:.2f}s (n={s['n']})")


def wait_for(check, timeout: float, every: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds the service runs by itself")
    parser.add_argument("--labels", type=int, default=4, help="labels per round (--min-new-labels, --query-size)")
    parser.add_argument("--strategy", default="entropy")
    parser.add_argument("--port", type=int, default=None, help="the service's port [a free one]")
    parser.add_argument("--workdir", type=Path, default=None, help="[a new temporary folder]")
    parser.add_argument("--keep", action="store_true", help="keep the Label Studio project")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("init_args", nargs="*", help="training options for `activeadv init` (after --)")
    args = parser.parse_args()
    url, token = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if not (url and token):
        raise SystemExit("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")

    work = (args.workdir or Path(tempfile.mkdtemp(prefix="activeadv-latency-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update({"ACTIVEADV_DATABASE_URL": f"sqlite:///{work / 'activeadv.db'}",
                       "ACTIVEADV_HOME": str(work / "home"), "ACTIVEADV_SERVE_DIR": str(work / "serve")})
    os.environ.pop("ACTIVEADV_PROJECT", None)
    aa = [sys.executable, "-m", "activeadv"]
    n, strategy = args.labels, args.strategy

    def cli(*argv: str) -> str:
        return subprocess.run([*aa, *argv], check=True, capture_output=True, text=True, cwd=work).stdout

    from activeadv import labelstudio as L
    from activeadv.app.workspace import Workspace
    from activeadv.store import Store

    t0 = time.monotonic()
    cli("init", "latency", "--dataset", "digits", "--label-studio", url, "-q", *args.init_args)
    cli("round", "--initial", str(n), "--query-size", str(n), "--strategy", strategy, "-q")
    cli("annotate-sim", "-q")
    cli("round", "--query-size", str(n), "--strategy", strategy, "-q")
    print(f"project ready in {time.monotonic() - t0:.0f}s (work dir {work})", file=sys.stderr)

    with Workspace() as ws:
        project = ws.project()
        ls_pid = int(project.ls_project_id)  # type: ignore[arg-type]
        targets = ws.dataset(project).pool.targets
        names = list(project.class_names)
    client = L.connect(url, token)
    store = Store.open(os.environ["ACTIVEADV_DATABASE_URL"])
    pid = store.get_project().id

    def labeled(item: int) -> bool:
        ids, _ = store.labels(pid)
        return item in set(int(i) for i in ids)

    port = args.port or free_port()
    print(cli("serve", "--port", str(port), "--min-new-labels", str(n), "--query-size", str(n), "--strategy",
              strategy, "--device", "cpu", "--retry-seconds", "1", "--detach", "--register").strip(), file=sys.stderr)
    to_sql: list[float] = []
    to_tasks: list[float] = []
    status: dict[str, Any] = {}
    try:
        for r in range(args.rounds):
            tasks_before = client.project_counts(ls_pid)["tasks"]
            rounds_before = len(store.rounds(pid))
            answered = [(t, i) for t, i in client.open_tasks(ls_pid) if i is not None][:n]
            if len(answered) < n:
                raise SystemExit(f"only {len(answered)} open task(s) in round {r + 1}")
            for task_id, item_id in answered:
                start = time.monotonic()
                client.annotate(task_id, names[int(targets([item_id])[0])])
                wait_for(lambda item=item_id: labeled(item), 60, 0.02, f"item {item_id} in SQL")
                to_sql.append(time.monotonic() - start)
            wait_for(lambda before=tasks_before: client.project_counts(ls_pid)["tasks"] >= before + n, 600, 0.1,
                     "the next round's tasks")
            to_tasks.append(time.monotonic() - start)
            wait_for(lambda before=rounds_before: len(store.rounds(pid)) > before
                     and store.unfinished_round(pid) is None, 120, 0.1, "the round to finish")
            print(f"round {r + 1}: submit -> SQL {', '.join(f'{t:.2f}' for t in to_sql[-n:])}s; "
                  f"N-th label -> new tasks {to_tasks[-1]:.2f}s", file=sys.stderr)
        status = json.loads(cli("serve", "status", "--json"))
    finally:
        cli("serve", "stop")
        store.close()
        if not args.keep:
            client.sdk.projects.delete(ls_pid)

    history = (status.get("worker") or {}).get("history") or []
    steps = {what: summary([h["seconds"] for h in history if h["step"] == what])
             for what in ("sync", "round") if any(h["step"] == what for h in history)}
    out = {"submit_to_sql_s": summary(to_sql), "nth_label_to_new_tasks_s": summary(to_tasks),
           "worker_steps_s": steps, "labels_per_round": n, "rounds": args.rounds, "strategy": strategy,
           "init_args": args.init_args, "label_studio": url, "cpus": os.cpu_count(),
           "load_average": os.getloadavg()}
    print(line("submit -> label in SQL", out["submit_to_sql_s"]))
    print(line(f"N-th label -> {n} new tasks in Label Studio", out["nth_label_to_new_tasks_s"]))
    for what, s in steps.items():
        print(line(f"  worker {what} step (last {s['n']})", s))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The seed's claims as a table (docs/robustness.md): train each adversarial-training configuration on the SAME
labeled set, evaluate each with the robustness suite on a fixed test subset, print markdown.

    python scripts/robustness_table.py --dataset idx:/work/shared/data/mnist \
        --labels runs/robustness/labels620.csv --out runs/robustness/table --threads 1

``--labels``: a CSV with ``key`` and ``label`` columns, e.g. the 620 labels a dfal project chose
(``activeadv labels export``); or ``--random N`` random pool items (seed 0).  Configurations (``--configs``):

- ``none``: plain training;
- ``fgsm_true`` / ``fgsm_pred``: FGSM adversarial training (Goodfellow et al. 2015, eq. 2) from the true label
  / from the predicted label (the label-leaking pair of Kurakin et al. 2017);
- ``pgd``: PGD adversarial training (Madry et al. 2018; ``--adv-steps`` steps, random start);
- ``ll``: iter-LL adversarial training (Kurakin et al. 2017);
- ``ensemble``: ensemble adversarial training (Tramer et al. 2018): FGSM, every other batch's examples from one
  of K=2 static plain models trained first on the same labels (their own seeds).

Every model uses TrainConfig's defaults otherwise (epochs 50, >= 300 steps, eps ``--epsilon``, alpha 0.5, the
same seed).  The suite (``robustness.evaluate_robustness``) runs on ``--test-subset`` test items (the same ids
for every model) at ``--eval-eps`` with ``--eval-steps`` iterations; ``transfer`` crafts FGSM and PGD examples on
a *holdout*: a plain model trained on the same labels with another seed (``--seed + 12345``), used by no
configuration's training.  ``--full-pool`` adds a reference row per configuration trained on every pool label
(capped at TrainConfig.max_steps).

Results go to ``--out/results.json`` after each model (a rerun with the same settings skips what is there) and
the tables to stdout and ``--out/table.md``; seconds are wall-clock on this machine with ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activeadv.data import Pool, load_dataset
from activeadv.robustness import RobustnessConfig, evaluate_robustness
from activeadv.training import TrainConfig, train

CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"adv": "none"},
    "fgsm_true": {"adv": "fgsm", "adv_target": "true"},
    "fgsm_pred": {"adv": "fgsm", "adv_target": "predicted"},
    "pgd": {"adv": "pgd"},
    "ll": {"adv": "ll"},
    "ensemble": {"adv": "fgsm", "adv_ensemble": 2},
}
TITLES = {"none": "plain (`--adv none`)", "fgsm_true": "FGSM, true label (`--adv fgsm --adv-target true`)",
          "fgsm_pred": "FGSM, predicted label (`--adv fgsm`, the default)", "pgd": "PGD (`--adv pgd`)",
          "ll": "iter-LL (`--adv ll`)", "ensemble": "ensemble, FGSM + 2 static (`--adv fgsm --adv-ensemble 2`)"}
COLUMNS = (("clean", "clean"), ("fgsm_true", "FGSM true"), ("fgsm_pred", "FGSM pred"), ("bim", "BIM"),
           ("pgd", "PGD"), ("pgd_l2", "PGD-L2"), ("ll", "iter-LL"), ("transfer_fgsm", "transfer FGSM"),
           ("transfer_pgd", "transfer PGD"))


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def labeled_set(pool: Pool, labels_csv: Path | None, random_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(pool ids, class indices)`` of the labeled set, sorted by id."""
    if labels_csv is not None:
        index = {key: i for i, key in enumerate(pool.keys)}
        classes = {name: c for c, name in enumerate(pool.class_names)}
        with labels_csv.open(newline="") as fh:
            rows = [(int(pool.ids[index[r["key"]]]), classes[r["label"]]) for r in csv.DictReader(fh)]
        rows.sort()
        return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64)
    assert random_n is not None
    ids = np.sort(np.random.default_rng(0).choice(pool.ids, random_n, replace=False))
    return ids, pool.targets(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="idx:/work/shared/data/mnist")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--labels", type=Path, help="CSV with key,label columns (activeadv labels export)")
    group.add_argument("--random", type=int, help="this many random pool items (seed 0) instead")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated of {', '.join(CONFIGS)}")
    parser.add_argument("--epsilon", type=float, default=0.1, help="training eps (the table's eps)")
    parser.add_argument("--adv-steps", type=int, default=5, help="pgd/ll training iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-subset", type=int, default=1000)
    parser.add_argument("--eval-eps", default="0.05,0.1,0.2,0.3")
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--min-steps", type=int, default=None, help="override TrainConfig.min_steps (quick tries)")
    parser.add_argument("--full-pool", action="store_true", help="also a reference row per config on every label")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/robustness/table"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset)
    pool, test = data.pool, data.test
    if test is None:
        raise SystemExit("the dataset needs a test split")
    ids, labels = labeled_set(pool, args.labels, args.random)
    base = TrainConfig(device="cpu", seed=args.seed, epsilon=args.epsilon, adv_steps=args.adv_steps)
    if args.min_steps is not None:
        base = replace(base, min_steps=args.min_steps)
    suite = RobustnessConfig(eps=tuple(float(e) for e in args.eval_eps.split(",")), subset=args.test_subset,
                             steps=args.eval_steps)
    settings = {"dataset": args.dataset, "labels": str(args.labels) if args.labels else f"random {args.random}",
                "n_labels": int(len(ids)), "train": base.to_dict(), "suite": asdict(suite), "threads": args.threads,
                "holdout_seed": args.seed + 12345}
    results_path = args.out / "results.json"
    results: dict[str, Any] = {}
    if results_path.exists():
        stored = json.loads(results_path.read_text())
        if stored.get("settings") == json.loads(json.dumps(settings)):
            results = stored.get("models", {})
            say(f"resuming: {', '.join(results) or 'nothing'} already done")

    def save() -> None:
        results_path.write_text(json.dumps({"settings": settings, "machine": machine(), "models": results},
                                           indent=2))

    say(f"{len(ids)} labels, suite on {min(args.test_subset, len(test))} test items, eps {suite.eps}")
    sets = [("", ids, labels)]
    if args.full_pool:
        sets.append((" (full pool)", pool.ids, pool.targets(pool.ids)))
    for suffix, train_ids, train_labels in sets:
        t0 = time.perf_counter()
        holdout = train(pool, train_ids, train_labels, replace(base, adv="none", seed=args.seed + 12345))
        holdout_seconds = time.perf_counter() - t0
        say(f"holdout{suffix} trained in {holdout_seconds:.0f} s")
        for name in args.configs.split(","):
            key = name + suffix
            if key in results:
                continue
            cfg = replace(base, **CONFIGS[name])
            t0 = time.perf_counter()
            model = train(pool, train_ids, train_labels, cfg)
            train_seconds = time.perf_counter() - t0
            say(f"{key}: trained in {train_seconds:.0f} s; evaluating")
            res = evaluate_robustness(model, test, suite, surrogates=[holdout])
            results[key] = {"config": CONFIGS[name], "train_seconds": train_seconds,
                            "holdout_seconds": holdout_seconds, "suite_seconds": res.total_seconds,
                            "seconds": res.seconds, "n": res.n,
                            "accuracy": {a: {f"{e:g}": v for e, v in by.items()} for a, by in res.accuracy.items()},
                            "rows": [asdict(r) for r in res.rows]}
            save()
            say(f"{key}: suite in {res.total_seconds:.0f} s; clean {res.accuracy['clean'][0.0]:.3f}")
    text = tables(results, suite, args.epsilon, settings)
    (args.out / "table.md").write_text(text)
    print(text)


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cores": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def tables(results: dict[str, Any], suite: RobustnessConfig, epsilon: float, settings: dict[str, Any]) -> str:
    at = f"{min(suite.eps, key=lambda e: abs(e - epsilon)):g}"
    lines = [f"Accuracy (%) at eps {at} (L-inf; PGD-L2 at its L2 radius for that eps) on {settings['n_labels']} "
             f"labels, {next(iter(results.values()))['n'] if results else 0} test items, "
             f"{suite.steps} attack steps:", ""]
    lines.append("| training | " + " | ".join(title for _, title in COLUMNS) + " | train s | suite s |")
    lines.append("|---" * (len(COLUMNS) + 3) + "|")
    for key, r in results.items():
        name, _, suffix = key.partition(" ")
        cells = [_pct(r["accuracy"].get(a, {}).get("0" if a == "clean" else at)) for a, _ in COLUMNS]
        lines.append(f"| {TITLES.get(name, name)}{(' ' + suffix) if suffix else ''} | " + " | ".join(cells)
                     + f" | {r['train_seconds']:.0f} | {r['suite_seconds']:.0f} |")
    lines += ["", "The sweep (accuracy %, eps " + ", ".join(f"{e:g}" for e in suite.eps) + "):", ""]
    lines.append("| training | attack | " + " | ".join(f"{e:g}" for e in suite.eps) + " |")
    lines.append("|---" * (len(suite.eps) + 2) + "|")
    for key, r in results.items():
        name = key.partition(" ")[0]
        for attack, title in COLUMNS[1:]:
            by = r["accuracy"].get(attack)
            if by:
                lines.append(f"| {name}{key[len(name):]} | {title} | "
                             + " | ".join(_pct(by.get(f"{e:g}")) for e in suite.eps) + " |")
    lines += ["", "Cost of each evaluation (seconds for the whole sweep on the test subset; mean over the models):",
              ""]
    attacks = [a for a in ("clean", "fgsm", "fgsm_pred", "bim", "pgd", "pgd_l2", "ll", "transfer_fgsm",
                           "transfer_pgd") if any(a in r["seconds"] for r in results.values())]
    lines.append("| " + " | ".join(attacks) + " | whole suite |")
    lines.append("|---" * (len(attacks) + 1) + "|")
    lines.append("| " + " | ".join(f"{np.mean([r['seconds'].get(a, 0.0) for r in results.values()]):.1f}"
                                   for a in attacks)
                 + f" | {np.mean([r['suite_seconds'] for r in results.values()]):.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""Score ensembles of saved test-set predictions (``train_probe.py --save-probs``): each model alone and the
average of the softmax of the models trained on the same labels (the same ``chosen_by``), which is what
``final-model`` would ship as an ensemble of model seeds.

    python scripts/ensemble_probs.py runs/probs/*.npz          # one line per label set, JSON
    python scripts/ensemble_probs.py --group config runs/probs/*.npz   # group by labels and training config
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--group", choices=["labels", "config"], default="labels",
                        help="average the models trained on the same labels, or on the same labels and config")
    args = parser.parse_args()
    groups: dict[tuple[str, str], list[tuple[str, np.ndarray, np.ndarray]]] = defaultdict(list)
    for path in sorted(args.files):
        with np.load(path) as saved:
            config = json.loads(str(saved["config"]))
            config.pop("seed", None)  # the model seed is what the ensemble averages over
            key = (str(saved["chosen_by"]), json.dumps(config, sort_keys=True) if args.group == "config" else "")
            groups[key].append((path.stem, saved["probs"], saved["targets"]))
    for (source, config), members in groups.items():
        targets = members[0][2]
        if any(len(t) != len(targets) or not np.array_equal(t, targets) for _, _, t in members):
            raise SystemExit(f"error: the files for {source} were scored on different test sets")
        alone = [float((p.argmax(1) == targets).mean()) for _, p, _ in members]
        mean_probs = np.mean([p for _, p, _ in members], axis=0)
        print(json.dumps({"chosen_by": source, **({"config": json.loads(config)} if config else {}),
                          "models": [name for name, _, _ in members],
                          "accuracy_each": [round(a, 4) for a in alone],
                          "accuracy_mean_of_models": round(float(np.mean(alone)), 4),
                          "accuracy_ensemble": round(float((mean_probs.argmax(1) == targets).mean()), 4)}))


if __name__ == "__main__":
    main()

"""Write the feature-vector datasets behind docs/results.md's "Feature vectors" section as .npz files.

    python scripts/feature_npz.py --out /tmp/feat        # digits-features[-asis], digits-mixed, breast-cancer (.npz)

All three come from scikit-learn's embedded datasets (no download), split 70/30 stratified with seed 0 like the
built-in ``digits`` dataset:

- ``digits-features``: the 8x8 digits as 64 features in one unit (pixel / 16, as the built-in images);
- ``digits-features-asis``: the same with ``feature_scale = ones``, so that activeadv keeps the stored values;
- ``digits-mixed``: the same features, each multiplied by 10**U(-2, 2) and shifted by N(0, 5) of that scale
  (seed 0): what feature vectors in arbitrary units look like to the product;
- ``breast-cancer``: the Wisconsin diagnostic data, 30 real measurements in their own units (areas near 1,000
  next to smoothness near 0.1), 2 classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split


def save(path: Path, x: np.ndarray, y: np.ndarray, names: list[str], **extra: np.ndarray) -> None:
    train, test = train_test_split(np.arange(len(x)), test_size=0.3, random_state=0, stratify=y)
    np.savez(path, x=x[train].astype(np.float32), y=y[train], x_test=x[test].astype(np.float32), y_test=y[test],
             class_names=np.array(names), **extra)
    print(f"wrote {path}: pool {len(train)}, test {len(test)}, {x.shape[1]} features")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x = digits.images.reshape(len(digits.images), -1) / 16.0
    names = [str(c) for c in range(10)]
    save(args.out / "digits-features.npz", x, digits.target, names)
    save(args.out / "digits-features-asis.npz", x, digits.target, names, feature_scale=np.ones(x.shape[1]))
    rng = np.random.default_rng(0)
    scale = 10.0 ** rng.uniform(-2, 2, size=x.shape[1])
    save(args.out / "digits-mixed.npz", x * scale + rng.normal(0, 5, size=x.shape[1]) * scale, digits.target, names)
    cancer = load_breast_cancer()
    save(args.out / "breast-cancer.npz", cancer.data, cancer.target, [str(n) for n in cancer.target_names])


if __name__ == "__main__":
    main()

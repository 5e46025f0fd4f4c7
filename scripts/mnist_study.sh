#!/usr/bin/env bash
# The MNIST label-efficiency study of docs/results.md (issue 9): strategies with and without the unlabeled term.
#
#   bash scripts/mnist_study.sh                 # the run published in docs/results.md (1 seed, 20 + 40 a round to 300)
#   SEEDS=3 BUDGET=620 JOBS=4 STRATEGIES=random,least-confidence,margin,entropy,coreset,dfal,fgsm-margin,dfal+kcenter \
#       bash scripts/mnist_study.sh             # the full protocol (days of CPU on 2 cores; hours on a GPU)
#
# Every simulate call logs its points as they arrive and runs with --resume: run the script again after an
# interruption and it continues where it stopped.  JOBS=N runs N curves side by side (`simulate --jobs`, each
# process with its share of the torch threads; 2 on a 2-core machine, 3-4 on one GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
MNIST=${MNIST:-../shared/data/mnist}
OUT=${OUT:-runs/study}
SEEDS=${SEEDS:-1}
BUDGET=${BUDGET:-300}
STRATEGIES=${STRATEGIES:-random,entropy,dfal,dfal+kcenter}
JOBS=${JOBS:-${PARALLEL:-1}}
COMMON=(--dataset "idx:$MNIST" --initial 20 --query-size 40 --budget "$BUDGET" --seeds "$SEEDS"
        --target-accuracy 0.97 --subsample "${CANDIDATES:-10000}" --augment --resume --jobs "$JOBS" -q)
# the VAT half as published: no augmentation (measured slightly worse with VAT at 500 steps: docs/results.md)
UNLABELED=(--unlabeled vat --unlabeled-steps "${UNLABELED_STEPS:-500}" --unlabeled-batch-size 64 --no-augment)

run() {  # run NAME ARGS...: one simulate over every strategy and seed, its own --out
  local name=$1
  shift
  .venv/bin/activeadv simulate "${COMMON[@]}" --strategies "$STRATEGIES" "$@" --out "$OUT/$name"
}

run none --unlabeled none
run vat "${UNLABELED[@]}"
echo "done: $OUT/*/summary.json, curves.csv, learning_curves.png"

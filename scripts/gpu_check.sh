#!/usr/bin/env bash
# The GPU checks of docs/results.md and docs/benchmarks.md, one call on a lent GPU machine (within 9 minutes: run it with timeout_s 590).
#   MODE=bench: one MNIST round by phase (`bench round`, default training and VAT) and whole-pool scoring
#     (`bench rank`, dfal fast and exact) on the GPU, with the same on 2 CPU cores of the machine beside them;
#   MODE=study (default): the MNIST study of issue 9 on the GPU: 20 random labels + 40 a round to 300, VAT on the
#     pool with augmentation, weight averaging (--ema) and STEPS steps a round, dfal on 3 seeds and random on 1, as
#     4 processes (`simulate --jobs`); then the final model: FINAL_STEPS steps on each curve's 300 labels
#     (`scripts/train_probe.py --labels-from`), 4 trainings side by side.
#   MODE=final: only the final models, on the labels of a finished study (FROM, default docs/results/ema/vat-ema:
#     dfal's 3 seeds on the CPU): dfal seeds 0-2 and random 300, FINAL_STEPS steps (default 8000), model seed 1, 4
#     side by side; then the same again with model seed 2 where the first reached 99% on average, else with
#     LONG_STEPS (default 12000) on dfal's labels, in the time left.
#   MODE=ensemble: model-seed ensembles of the final model: on the labels of a finished study (FROM, default
#     docs/results/ema/vat-warmup: dfal after a random round, the default since 2026-11-26), dfal seeds 0-2 and
#     random 300, each with model seeds 1-3 (FINAL_STEPS, default 3000), saving each model's test softmax
#     (scripts/ensemble_probs.py scores them); model seeds 1-2 as 8 side by side, then seed 3 as 4; then EntMin on dfal seeds 0-2 and
#     random (model seed 1) in the time left.  Beside them all, one curve to 620 labels (dfal, seed 0, the study's
#     settings) so that FGSM accuracy at 620 labels is measured.
#   MODE=study620: the rest of the 620-label protocol (20 + 40 a round, 3 seeds, the VAT settings of
#     docs/results/gpu/study620), 4 strategies x 3 seeds as 12 processes, packed into one file:
#     PART=vat: margin, least-confidence, coreset, fgsm-margin with VAT; PART=none-a: dfal, random, entropy,
#     dfal+kcenter with --unlabeled none (the default training: augmentation on); PART=none-b: the other four so.
#     On an H200 the 12 VAT curves took 4.2 minutes.
# bench and study start with a smoke run of the CUDA path (digits: VAT, dfal and dfal+kcenter on the GPU).
# Measured on an H200 (2026-11-26): one process trains at ~15 ms a VAT step whatever the batch (the GPU waits on
# Python's kernel launches), 2-3 processes side by side each keep that pace, 16 starve each other (on 14 cores);
# hence 4 processes here.  Every simulate point is logged as its round ends (points.jsonl), so a deadline keeps
# every finished round.
# Usage: MNIST=DIR OUT=DIR [MODE=study|bench|final] [TOTAL=seconds, default 540] [STEPS=2000] [FINAL_STEPS=3000]
#        bash scripts/gpu_check.sh
set -u
MNIST=${MNIST:-.devdata/mnist}
OUT=${OUT:-runs/gpu}
TOTAL=${TOTAL:-540}
STEPS=${STEPS:-2000}
MODE=${MODE:-study}
if [ "$MODE" = final ]; then FINAL_STEPS=${FINAL_STEPS:-8000}; fi
FINAL_STEPS=${FINAL_STEPS:-3000}  # as measured on the CPU: 98.98% on dfal seed 0's 300 labels (docs/results.md)
LONG_STEPS=${LONG_STEPS:-12000}
if [ "$MODE" = ensemble ]; then FROM=${FROM:-docs/results/ema/vat-warmup}; fi
FROM=${FROM:-docs/results/ema/vat-ema}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
AA="python3 -m activeadv"
LOG=$OUT/log.txt
R=$OUT/runs
mkdir -p "$R"
say() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
command -v taskset >/dev/null || taskset() { shift 2; "$@"; }
cores=$(nproc)
GPU_CORES="0-$((cores - 3))"  # the GPU jobs' Python threads
CPU_CORES="$((cores - 2)),$((cores - 1))"  # the CPU baselines, undisturbed
if [ "$cores" -lt 4 ]; then GPU_CORES="0-$((cores - 1))"; CPU_CORES=$GPU_CORES; fi

say "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
say "$(python3 -c 'import torch,sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())')"

# final model: train_probe on a curve's labels (or random ones): NAME STEPS MODEL_SEED TIMEOUT [--labels-from ...]
final_model() {
  local name=$1 steps=$2 mseed=$3 limit=$4; shift 4
  local cfg='{"unlabeled": "vat", "unlabeled_min_steps": '"$steps"', "unlabeled_batch_size": 256, "augment": true, "ema": 0.999, "seed": '"$mseed"${EXTRA_CFG:-}'}'
  timeout "$limit" python3 scripts/train_probe.py --dataset "idx:$MNIST" --labels 300 --device "${DEVICE:-cuda}" --threads 1 \
      "$@" "$cfg" >"$R/final_${name}_${steps}_m${mseed}.txt" 2>&1
}
mean_accuracy() {  # mean test accuracy of the given result files (0 where none finished)
  cat "$@" 2>/dev/null | python3 -c 'import json,sys; a=[json.loads(l)["accuracy"] for l in sys.stdin if l.startswith("{")]; print(sum(a)/len(a) if len(a)==3 else 0)'
}

if [ "$MODE" = final ]; then
  limit=$((FINAL_STEPS * 30 / 1000 + 40))
  say "final models: $FINAL_STEPS steps from $FROM, limit ${limit}s each"
  for seed in 0 1 2; do final_model "dfal$seed" "$FINAL_STEPS" 1 "$limit" --labels-from "$FROM" --strategy dfal --seed "$seed" & done
  final_model random "$FINAL_STEPS" 1 "$limit" &
  sleep 60; say "$(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader)"
  wait
  first=$(mean_accuracy "$R"/final_dfal?_"${FINAL_STEPS}"_m1.txt)
  say "model seed 1, $FINAL_STEPS steps: dfal mean $first"
  left=$((TOTAL - SECONDS - 20))
  if python3 -c "import sys; sys.exit(0 if $first >= 0.99 else 1)"; then steps=$FINAL_STEPS; mseed=2; else steps=$LONG_STEPS; mseed=1; fi
  say "next: $steps steps, model seed $mseed, ${left}s left"
  for seed in 0 1 2; do final_model "dfal$seed" "$steps" "$mseed" "$left" --labels-from "$FROM" --strategy dfal --seed "$seed" & done
  [ "$mseed" = 2 ] && final_model random "$steps" 2 "$left" &
  wait
  say "second set: dfal mean $(mean_accuracy "$R"/final_dfal?_"${steps}"_m"${mseed}".txt)"
  tar -czf "$OUT/gpu_runs.tgz" -C "$R" . && cat "$R"/final_*.txt >"$OUT/final.txt" && rm -rf "$R"
  say "packed"
  exit 0
fi

if [ "$MODE" = study620 ]; then
  PART=${PART:-vat}
  case "$PART" in
    vat) strategies="margin least-confidence coreset fgsm-margin"; training=(--unlabeled vat --unlabeled-steps 500 --unlabeled-batch-size 64 --no-augment) ;;
    none-a) strategies="dfal random entropy dfal+kcenter"; training=(--unlabeled none) ;;
    none-b) strategies="margin least-confidence coreset fgsm-margin"; training=(--unlabeled none) ;;
    *) say "unknown PART=$PART (vat, none-a, none-b)"; exit 2 ;;
  esac
  say "study620 $PART: $strategies"
  for s in $strategies; do
    timeout $((TOTAL - SECONDS - 25)) $AA simulate --dataset "idx:$MNIST" --strategies "$s" --initial 20 \
        --query-size 40 --budget 620 --seeds 3 --jobs 3 --target-accuracy 0.99 --subsample 10000 "${training[@]}" \
        --ema 0.99 --device "${DEVICE:-cuda}" -q --out "$R/$PART-${s/+/-}" >"$R/log-$PART-${s/+/-}.txt" 2>&1 &
  done
  sleep 60; say "$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  wait
  for s in $strategies; do say "$s: $(cat "$R/$PART-${s/+/-}/points.jsonl" 2>/dev/null | grep -c '"labels"') of 48 points"; done
  tar -czf "$OUT/study620_$PART.tgz" -C "$R" . && rm -rf "$R"
  say "packed"
  exit 0
fi

if [ "$MODE" = ensemble ]; then
  limit=$((FINAL_STEPS * 60 / 1000 + 40))
  timeout $((TOTAL - SECONDS - 25)) $AA simulate --dataset "idx:$MNIST" --strategies dfal --initial 20 --query-size 40 \
      --budget 620 --seeds 1 --target-accuracy 0.99 --subsample 10000 --unlabeled vat --unlabeled-steps 500 \
      --unlabeled-batch-size 64 --no-augment --ema 0.99 --device cuda -q --out "$R/curve620" >>"$LOG" 2>&1 &
  curve=$!
  say "ensemble: $FINAL_STEPS steps from $FROM, limit ${limit}s a wave"
  for mseeds in "1 2" "3"; do
    for mseed in $mseeds; do
      for seed in 0 1 2; do
        final_model "dfal$seed" "$FINAL_STEPS" "$mseed" "$limit" --labels-from "$FROM" --strategy dfal --seed "$seed" \
            --save-probs "$R/probs" &
      done
      final_model random "$FINAL_STEPS" "$mseed" "$limit" --save-probs "$R/probs" &
    done
    sleep 45; say "$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
    wait $(jobs -p | grep -v "^$curve$")
    say "model seeds $mseeds done: $(cat "$R"/final_*.txt | grep -c accuracy) results"
  done
  left=$((TOTAL - SECONDS - 25))
  say "entmin, ${left}s left"
  for seed in 0 1 2; do
    EXTRA_CFG=', "entmin": true' final_model "entmin_dfal$seed" "$FINAL_STEPS" 1 "$left" --labels-from "$FROM" \
        --strategy dfal --seed "$seed" --save-probs "$R/probs_entmin" &
  done
  EXTRA_CFG=', "entmin": true' final_model entmin_random "$FINAL_STEPS" 1 "$left" --save-probs "$R/probs_entmin" &
  wait
  say "done: $(cat "$R"/final_*.txt | grep -c accuracy) results; curve620: $(cat "$R/curve620/points.jsonl" 2>/dev/null | grep -c '"labels"') points"
  ls "$R"/probs/*.npz >/dev/null 2>&1 && python3 scripts/ensemble_probs.py "$R"/probs/*.npz | tee -a "$LOG"
  tar -czf "$OUT/gpu_runs.tgz" -C "$R" . && cat "$R"/final_*.txt >"$OUT/final.txt" && rm -rf "$R"
  say "packed"
  exit 0
fi

# 1. smoke
$AA simulate --dataset digits --strategies dfal,dfal+kcenter --initial 20 --query-size 20 --budget 60 --seeds 1 \
    --target-accuracy 0.9 --unlabeled vat --unlabeled-steps 50 --min-steps 50 --lr-schedule cosine --device cuda \
    --out "$R/smoke" -q >>"$LOG" 2>&1
rc=$?
say "smoke rc=$rc"
if [ "$rc" != 0 ]; then tail -30 "$LOG"; tar -czf "$OUT/gpu_runs.tgz" -C "$R" .; exit 1; fi

if [ "$MODE" = bench ]; then
# CPU baselines on 2 cores in the background, GPU benches in the foreground
(
  taskset -c "$CPU_CORES" $AA bench round --dataset "idx:$MNIST" --rounds 2 --strategy dfal --threads 2 --device cpu \
      --json -q >"$R/bench_round_cpu_default.json" 2>>"$LOG"
  taskset -c "$CPU_CORES" $AA bench rank --dataset "idx:$MNIST" --threads 2 --device cpu --limit 20000 --json \
      >"$R/bench_rank_cpu_fast.json" 2>>"$LOG"
  taskset -c "$CPU_CORES" $AA bench round --dataset "idx:$MNIST" --rounds 2 --strategy dfal --threads 2 --device cpu \
      --unlabeled vat --no-augment --json -q >"$R/bench_round_cpu_vat.json" 2>>"$LOG"
) &
CPU_BENCH=$!
for rep in 1 2; do
  taskset -c "$GPU_CORES" $AA bench round --dataset "idx:$MNIST" --rounds 2 --strategy dfal --device cuda --json -q \
      >"$R/bench_round_gpu_default_$rep.json" 2>>"$LOG"
done
taskset -c "$GPU_CORES" $AA bench round --dataset "idx:$MNIST" --rounds 2 --strategy dfal --device cuda \
    --unlabeled vat --no-augment --json -q >"$R/bench_round_gpu_vat.json" 2>>"$LOG"
for rep in 1 2; do
  taskset -c "$GPU_CORES" $AA bench rank --dataset "idx:$MNIST" --device cuda --json \
      >"$R/bench_rank_gpu_fast_$rep.json" 2>>"$LOG"
done
taskset -c "$GPU_CORES" $AA bench rank --dataset "idx:$MNIST" --device cuda --exact --json \
    >"$R/bench_rank_gpu_exact.json" 2>>"$LOG"
say "gpu benches done"

while kill -0 "$CPU_BENCH" 2>/dev/null && [ "$SECONDS" -lt "$TOTAL" ]; do sleep 2; done
pkill -f "device cpu" && say "cpu benches stopped at the deadline" || say "cpu benches done"
else
# the study, under one deadline that leaves the final trainings their time (~15 ms a step, 4 side by side)
FINAL_SECONDS=$((FINAL_STEPS * 20 / 1000 + 30))
DEADLINE=$((TOTAL - SECONDS - 30 - FINAL_SECONDS))
say "study deadline ${DEADLINE}s"
common=(--dataset "idx:$MNIST" --initial 20 --query-size 40 --budget 300 --subsample 10000 --target-accuracy 0.99
        --device cuda -q --unlabeled vat --unlabeled-steps "$STEPS" --unlabeled-batch-size 256 --augment --ema 0.995)
timeout "$DEADLINE" $AA simulate --strategies dfal --seeds 3 --jobs 3 "${common[@]}" --out "$R/vat-dfal" \
    >>"$LOG" 2>&1 &
study=$!
timeout "$DEADLINE" $AA simulate --strategies random --seeds 1 "${common[@]}" --out "$R/vat-random" >>"$LOG" 2>&1 &
random=$!
sleep 90; say "$(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader)"
wait "$study" "$random"
pkill -f "multiprocessing.spawn" || true  # workers of a simulate stopped at the deadline
say "study done (or stopped at its deadline)"
# the final model on each curve's 300 labels (a curve stopped early has none: its line says so)
final='{"unlabeled": "vat", "unlabeled_min_steps": '"$FINAL_STEPS"', "unlabeled_batch_size": 256, "augment": true, "ema": 0.999}'
for seed in 0 1 2; do
  timeout "$FINAL_SECONDS" python3 scripts/train_probe.py --dataset "idx:$MNIST" --labels 300 --device cuda \
      --threads 1 --labels-from "$R/vat-dfal" --strategy dfal --seed "$seed" "$final" >"$R/final_dfal_$seed.txt" 2>&1 &
done
timeout "$FINAL_SECONDS" python3 scripts/train_probe.py --dataset "idx:$MNIST" --labels 300 --device cuda \
    --threads 1 "$final" >"$R/final_random.txt" 2>&1 &
wait
say "final trainings: $(cat "$R"/final_*.txt | grep -c accuracy) of 4 done"
fi
tar -czf "$OUT/gpu_runs.tgz" -C "$R" . && rm -rf "$R"
say "packed"

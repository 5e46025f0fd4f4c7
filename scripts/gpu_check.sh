#!/usr/bin/env bash
# The GPU checks of docs/results.md and docs/benchmarks.md, one call on a lent GPU machine (within 9 minutes: run it with timeout_s 590).
#   MODE=bench: one MNIST round by phase (`bench round`, default training and VAT) and whole-pool scoring
#     (`bench rank`, dfal fast and exact) on the GPU, with the same on 2 CPU cores of the machine beside them;
#   MODE=study (default): the MNIST study of issue 9 on the GPU: 20 random labels + 40 a round to 300, VAT on the
#     pool with augmentation, weight averaging (--ema) and STEPS steps a round, dfal on 3 seeds and random on 1, as
#     4 processes (`simulate --jobs`); then the final model: FINAL_STEPS steps on each curve's 300 labels
#     (`scripts/train_probe.py --labels-from`), 4 trainings side by side.
# Both start with a smoke run of the CUDA path (digits: VAT, dfal and dfal+kcenter on the GPU).
# Measured on an H200 (2026-11-26): one process trains at ~15 ms a VAT step whatever the batch (the GPU waits on
# Python's kernel launches), 2-3 processes side by side each keep that pace, 16 starve each other (on 14 cores);
# hence 4 processes here.  Every simulate point is logged as its round ends (points.jsonl), so a deadline keeps
# every finished round.
# Usage: MNIST=DIR OUT=DIR [MODE=study|bench] [TOTAL=seconds, default 540] [STEPS=2000] [FINAL_STEPS=3000]
#        bash scripts/gpu_check.sh
set -u
MNIST=${MNIST:-.devdata/mnist}
OUT=${OUT:-runs/gpu}
TOTAL=${TOTAL:-540}
STEPS=${STEPS:-2000}
FINAL_STEPS=${FINAL_STEPS:-3000}  # as measured on the CPU: 98.98% on dfal seed 0's 300 labels (docs/results.md)
MODE=${MODE:-study}
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

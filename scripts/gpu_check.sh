#!/usr/bin/env bash
# The GPU figures of docs/results.md and docs/benchmarks.md in one call on a lent GPU machine (about 8 minutes):
#   1. a smoke run of the CUDA path (digits: VAT, cosine schedule, dfal and dfal+kcenter on the GPU);
#   2. one MNIST round by phase (`bench round`, default training and VAT) on the GPU, with the same round on
#      2 CPU cores of the same machine beside it (taskset: cores the GPU jobs do not use);
#   3. whole-pool scoring rate (`bench rank`, dfal fast and exact) on the GPU and on 2 CPU cores;
#   4. the MNIST study of issue 9 (20 random labels + 40 a round to 300, 3 seeds, VAT with a cosine schedule,
#      dfal / dfal+kcenter / entropy / random, one process per curve group sharing the GPU) and the same
#      strategies with labels only, plus single trainings on 300 random labels (scripts/train_probe.py);
#      each process logs its points as they come (points.jsonl), so a deadline keeps every finished round.
# Usage: MNIST=DIR OUT=DIR bash scripts/gpu_check.sh    (TOTAL=seconds for the whole script, default 500;
#        STEPS=optimizer steps per VAT training, default 2000)
set -u
MNIST=${MNIST:-.devdata/mnist}
OUT=${OUT:-runs/gpu}
TOTAL=${TOTAL:-500}
STEPS=${STEPS:-2000}
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

# 2 + 3. CPU baselines on 2 cores in the background, GPU benches in the foreground
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

# 4. the study, one process per (setting, seed), all sharing the GPU, under one deadline
DEADLINE=$((TOTAL - SECONDS - 40))
say "study deadline ${DEADLINE}s"
common=(--dataset "idx:$MNIST" --initial 20 --query-size 40 --budget 300 --seeds 1 --subsample 10000
        --target-accuracy 0.99 --device cuda -q)
vat=(--unlabeled vat --unlabeled-steps "$STEPS" --lr-schedule cosine --no-augment)
pids=()
for seed in 0 1 2; do
  for strat in dfal dfal+kcenter entropy random; do
    timeout "$DEADLINE" taskset -c "$GPU_CORES" $AA simulate --strategies "$strat" --seed "$seed" "${common[@]}" \
        "${vat[@]}" --out "$R/vat/$strat-$seed" >>"$LOG" 2>&1 &
    pids+=($!)
  done
  timeout "$DEADLINE" taskset -c "$GPU_CORES" $AA simulate --strategies dfal,random,entropy --seed "$seed" \
      "${common[@]}" --out "$R/none/$seed" >>"$LOG" 2>&1 &
  pids+=($!)
done
timeout "$DEADLINE" taskset -c "$GPU_CORES" python3 scripts/train_probe.py --dataset "idx:$MNIST" --labels 300 \
    --device cuda \
    "{\"unlabeled\": \"vat\", \"unlabeled_min_steps\": $STEPS, \"augment\": false}" \
    "{\"unlabeled\": \"vat\", \"unlabeled_min_steps\": $STEPS, \"augment\": false, \"lr_schedule\": \"cosine\"}" \
    "{\"unlabeled\": \"vat\", \"unlabeled_min_steps\": $((STEPS * 2)), \"augment\": false, \"lr_schedule\": \"cosine\"}" \
    "{\"unlabeled\": \"vat\", \"unlabeled_min_steps\": $STEPS, \"augment\": true, \"lr_schedule\": \"cosine\"}" \
    "{\"unlabeled\": \"vat\", \"unlabeled_min_steps\": $STEPS, \"unlabeled_batch_size\": 256, \"augment\": false, \"lr_schedule\": \"cosine\"}" \
    >"$R/probe300.txt" 2>>"$LOG" &
pids+=($!)
sleep 60; say "$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
for p in "${pids[@]}"; do wait "$p"; done
say "study done (or stopped at its deadline)"
while kill -0 "$CPU_BENCH" 2>/dev/null && [ "$SECONDS" -lt $((TOTAL + 20)) ]; do sleep 2; done
pkill -f "device cpu" && say "cpu benches stopped at the deadline" || say "cpu benches done"
tar -czf "$OUT/gpu_runs.tgz" -C "$R" . && rm -rf "$R"
say "packed"

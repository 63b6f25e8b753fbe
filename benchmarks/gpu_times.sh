#!/usr/bin/env bash
# Time per (model, seed) on one GPU, and the GPU rows of the precision, training and inference
# benchmarks. Writes logs and the result records under $OUT (default /tmp/seg-bench-gpu); the
# README's GPU times come from a run of this script.
#
#   SEG_BENCH_DATA=../shared/data bash benchmarks/gpu_times.sh
#
# Each step has its own time limit so that one slow step cannot starve the others.
set -u
OUT=${OUT:-/tmp/seg-bench-gpu}
PY=${PYTHON:-python3}
[[ -z ${PYTHON:-} && -x .venv/bin/python ]] && PY=.venv/bin/python  # after `make install`
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore WANDB_MODE=disabled
RUNS=$(mktemp -d)

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  [[ -z ${ONLY:-} || ",$ONLY," == *",$name,"* ]] || return 0  # ONLY=a,b runs those steps
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "$name: rc $? in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/steps.log"
}

{
  nvidia-smi -L
  echo "cpu cores: $(nproc)"
  lscpu | grep -E "^Model name"
  $PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
} >"$OUT/env.log" 2>&1

bench() {  # bench NAME SECONDS ARGS...: seg-bench bench, 1 seed, records under $RUNS/NAME
  local name=$1 limit=$2
  shift 2
  step "$name" "$limit" $PY -m seg_bench.cli bench --seeds 1 --logger csv \
    --results-dir "$RUNS/$name" --leaderboard-dir "$RUNS/$name/leaderboards" "$@"
}

# The cpu profile (what the committed leaderboards ran) on the GPU, precision auto (16-mixed).
bench synthetic_cpu 90 --dataset synthetic --profile cpu
# The paper profile: 2 epochs per model; time per epoch x the profile's epochs = a full run.
bench epfl_paper 150 --dataset epfl --profile paper --epochs 2 --models unet,resunet,segnet
bench epfl_paper_slow 200 --dataset epfl --profile paper --epochs 2 \
  --models tiramisu,smp-unet-resnet18
# Precision at the paper profile's size (the auto choice on a GPU is 16-mixed).
bench epfl_paper_fp32 60 --dataset epfl --profile paper --epochs 2 --models unet --precision 32
bench epfl_paper_bf16 60 --dataset epfl --profile paper --epochs 2 --models unet \
  --precision bf16-mixed
step precision 120 $PY benchmarks/bench_precision.py --models unet,smp-unet-resnet18 --budget 90
step training 45 $PY benchmarks/bench_training.py --device cuda --quick --budget 35
step inference 60 $PY benchmarks/bench_inference.py --device cuda --no-tta

# One line per result record: what the README's GPU times are read from.
$PY - "$RUNS" >"$OUT/records.tsv" <<'PY'
import json, pathlib, sys
print("run\tmodel\tprofile\tprecision\tepochs\ttrain_time_s\tiou\tgpu")
for p in sorted(pathlib.Path(sys.argv[1]).glob("*/*/*.json")):
    r = json.loads(p.read_text())
    if "train_time_s" in r:
        print(p.parts[-3], r["model"], r["profile"], r["precision"], r["epochs"],
              f"{r['train_time_s']:.1f}", f"{r['metrics']['overall'].get('iou', float('nan')):.3f}",
              r["hardware"].get("gpu"), sep="\t")
PY
rm -rf "$RUNS"

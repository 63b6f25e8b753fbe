#!/usr/bin/env bash
# Regenerate the committed leaderboards under one profile (default cpu: 3 seeds of the five
# bench models), one dataset after another. Resumable: the result records are kept in
# leaderboards/records/<dataset>/ (committed; the bulky previews beside them are not), so a
# finished (model, seed) is skipped in the next session too, and a killed run resumes from its
# last checkpoint under $SEG_BENCH_RUNS. DSB 2018 also trains the instance-aware targets.
#
#   SEG_BENCH_DATA=../shared/data benchmarks/leaderboards.sh epfl ncmir
#
# Run it from a `git worktree` of a fixed commit, so code edited meanwhile is not loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
SEG_BENCH="${SEG_BENCH:-.venv/bin/seg-bench}"
PROFILE="${PROFILE:-cpu}"
SEEDS="${SEEDS:-3}"
RECORDS="${RECORDS:-leaderboards/records}"
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(synthetic isbi2012 epfl ncmir dsb2018)

bench() {  # dataset, extra options
    local dataset=$1
    shift
    "$SEG_BENCH" bench --dataset "$dataset" --profile "$PROFILE" --seeds "$SEEDS" \
        --results-dir "$RECORDS" --leaderboard-dir "runs/results/leaderboards" \
        --logger none "$@"
}

for dataset in "${datasets[@]}"; do
    start=$(date +%s)
    if [ "$dataset" = dsb2018 ]; then
        # Seed-major over both targets, so a stopped run has whole seeds of each. The distance
        # target (one seed of two models in leaderboards/superseded/dsb2018) is left out: a
        # third of the time again for a target validation picked for neither model.
        for seeds in $(seq 1 "$SEEDS"); do
            for target in binary boundary3; do
                SEEDS=$seeds bench "$dataset" --set "target=$target"
            done
        done
    elif [ "$dataset" = isbi2012 ]; then
        # Each network tested plainly and with D4 TTA (its plain twin first), as the committed
        # table and its "TTA against plain" section were made.
        bench "$dataset" --tta
    else
        bench "$dataset"
    fi
    echo "bench time $dataset: $(( ($(date +%s) - start) / 60 )) min on $(nproc) cores"
    # The committed table, from every record kept so far (replacing the previous one).
    "$SEG_BENCH" leaderboard --dataset "$dataset" --results-dir "$RECORDS" \
        --leaderboard-dir leaderboards --profile "$PROFILE" --force > /dev/null
done

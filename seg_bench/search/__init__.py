"""Hyperparameter search with Optuna: ``seg-bench search --dataset D --model M --trials N``.

What is searched (:mod:`~seg_bench.search.space`)
    ``--space`` picks from ``optimizer`` (the registered optimizers), ``lr`` (log-uniform
    1e-5..1e-1), ``weight_decay`` (log-uniform 1e-6..1e-2), ``batch_size`` (2, 4, 8, 16) and
    ``loss`` (bce_dice, dice, bce, focal); the default is ``optimizer,lr``. A key also given
    explicitly on the command line (``--lr 1e-3``) is fixed, not searched. Everything else
    comes from the profile, as for ``train``, except that ``smoke`` search trials train 4
    epochs of 32 samples so that pruning has distinct validation scores to compare.

One trial (:mod:`~seg_bench.search.objective`)
    Trains into ``<runs>/search/<study>/trial_<n>`` and returns its best ``val/iou``
    (maximised); a trial that diverges or raises is recorded FAIL with its ``fail_reason`` and
    the study goes on. DDP inside a trial runs as ``ddp_spawn``; multi-node DDP is not
    supported: scale out with one worker per machine sharing a PostgreSQL study instead.

Running (:mod:`~seg_bench.search.runner`)
    ``--trials N`` is a target, so a rerun resumes; the sampler is a seeded TPESampler
    (``--seed``), so a single worker on a fresh study is reproducible; ``--pruner`` median,
    hyperband or none.

Storage (:mod:`~seg_bench.search.storage`)
    ``<runs>/search/<study>.db`` (SQLite) unless ``--storage URL`` names another; the study
    name defaults to ``<dataset>-<model>-<profile>``. A study is tied to its search space,
    dataset and model. Server storages get a heartbeat and per-worker sampler seeds.

Results (:mod:`~seg_bench.search.display`)
    ``search --show`` prints the trials and parameter importances (or, when the study is
    missing, the studies that exist); :func:`best_params` returns the best trial's parameters
    (RunConfig fields), which ``bench --trials N`` trains its seeds with.
"""

from seg_bench.search.display import (
    INTERRUPTED,
    SearchResult,
    best_params,
    counts,
    describe_best,
    finished_trials,
    importances_text,
    load,
    show,
    summarize,
    trials_table,
)
from seg_bench.search.runner import (
    PRUNERS,
    build_pruner,
    check_shown_options,
    run_search,
    tuned_parameters,
)
from seg_bench.search.space import DEFAULT_SPACE, MONITOR, choices, parse_space, suggest
from seg_bench.search.storage import (
    default_study_name,
    mask_url,
    open_storage,
    open_study,
    storage_url,
)

__all__ = [
    "DEFAULT_SPACE",
    "INTERRUPTED",
    "MONITOR",
    "PRUNERS",
    "SearchResult",
    "best_params",
    "build_pruner",
    "check_shown_options",
    "choices",
    "counts",
    "default_study_name",
    "describe_best",
    "finished_trials",
    "importances_text",
    "load",
    "mask_url",
    "open_storage",
    "open_study",
    "parse_space",
    "run_search",
    "show",
    "storage_url",
    "suggest",
    "summarize",
    "trials_table",
    "tuned_parameters",
]

"""Evaluation: scores for a trained model on a split, and for prediction files.

* ``evaluate.py``: the test split through sliding-window inference and post-processing, into
  per-image sufficient statistics from which every dataset-level score is derived.
* ``score.py``: ``seg-bench score``, prediction files against ground-truth files.

The metrics themselves are pure functions in ``seg_bench.metrics``.
"""

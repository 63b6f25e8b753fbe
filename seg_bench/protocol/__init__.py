"""The benchmark protocol: runs, their records, and the leaderboards made from them.

* ``bench.py``: models x seeds on one dataset, each run trained, tested and recorded; resumable.
* ``records.py``: one JSON result record per run (config, data, split, budget, hardware,
  versions, commit, per-image metrics).
* ``report.py``: records -> leaderboard markdown/CSV; ``figures.py``: ROC, PR, overlays.
* ``provenance.py``: the code version and library versions behind a number.
"""

"""Which machine trained and which tested each record, and per-machine means of a timing: the
seeds of one table may come from different machines (a 2-core EPYC one session, a Xeon with AMX
the next), and a mean over them would time neither (protocol/cells.py shows them)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from seg_bench.hardware import hardware_label


def last_test(record: dict) -> dict | None:
    """Who tested the record's checkpoint after its training run did, if anyone: ``rescored``
    (--rescore), else ``tested`` (a test variant such as --tta, protocol/retest.py)."""
    return record.get("rescored") or record.get("tested")


def trained_on(record: dict) -> str:
    return hardware_label(record["hardware"])


def tested_on(record: dict) -> str:
    """The machine whose test produced the record's metrics, inference speed included."""
    return hardware_label((last_test(record) or record)["hardware"])


def machine_order(records: list[dict]) -> list[str]:
    """Every machine that trained or tested the records, in the header's order: trainers
    sorted, then machines that only tested again from checkpoints."""
    trainers = sorted({trained_on(r) for r in records})
    return trainers + sorted({tested_on(r) for r in records} - set(trainers))


def mean_by_machine(
    records: list[dict], value: Callable[[dict], float], machine: Callable[[dict], str]
) -> dict[str, float]:
    """The mean of ``value`` over the records of each machine."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in records:
        values[machine(r)].append(value(r))
    return {m: float(np.mean(v)) for m, v in values.items()}  # as the CSV's mean over all

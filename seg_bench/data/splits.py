"""How many items each split gets: rounded shares of a total, and the group x split table of a
stratified split. Pure arithmetic; ``seeded_split`` (data/base.py) draws the items."""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """How many of ``n`` items each split gets: rounded shares, at least one each."""
    names = list(fractions)
    counts = {k: max(1, round(fractions[k] * n)) for k in names}
    # The last split takes what is left, so the counts always add up.
    counts[names[-1]] = n - sum(counts[k] for k in names[:-1])
    while counts[names[-1]] < 1:  # rounding over-served the earlier splits (e.g. 5 ids, 70/15/15)
        largest = max(names[:-1], key=lambda k: counts[k])
        counts[largest] -= 1
        counts[names[-1]] += 1
    return counts


def stratified_counts(
    group_sizes: dict[str, int], split_sizes: dict[str, int]
) -> dict[str, dict[str, int]]:
    """Integer group x split counts with the given margins, each within one of its exact share
    ``group_size * split_size / n``: a controlled rounding of that table.

    Each cell is its share rounded down or up. Which cells go up is a small transportation
    problem (the units left over in each group onto the places left in each split, at most one
    per cell); of its solutions we take the one closest to the exact table (the largest
    fractional parts rounded up), solved exactly by ``scipy.optimize.milp``. A solution always
    exists: the fractional parts themselves are a 0..1 solution, and the constraint matrix is
    totally unimodular.
    """
    groups, splits = list(group_sizes), list(split_sizes)
    n = sum(group_sizes.values())
    exact = np.array([[group_sizes[g] * split_sizes[k] / n for k in splits] for g in groups])
    floor = np.floor(exact + 1e-9)
    left = np.array([group_sizes[g] for g in groups]) - floor.sum(axis=1)
    short = np.array([split_sizes[k] for k in splits]) - floor.sum(axis=0)
    n_g, n_k = floor.shape
    rows = np.kron(np.eye(n_g), np.ones(n_k))  # x[g, k] flattened row-major
    cols = np.kron(np.ones(n_g), np.eye(n_k))
    result = milp(
        c=-(exact - floor).ravel(),
        constraints=[LinearConstraint(rows, left, left), LinearConstraint(cols, short, short)],
        integrality=np.ones(n_g * n_k),
        bounds=Bounds(0, 1),
    )
    if not result.success:  # cannot happen for consistent margins (see above)
        raise ValueError(f"no stratified split for groups {group_sizes} into {split_sizes}")
    up = np.round(result.x).reshape(n_g, n_k)
    return {
        g: {k: int(floor[i, j] + up[i, j]) for j, k in enumerate(splits)}
        for i, g in enumerate(groups)
    }

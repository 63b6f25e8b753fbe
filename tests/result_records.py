"""A result record as seg_bench.protocol.bench writes it, small enough for report tests."""

from __future__ import annotations

from typing import Any

from seg_bench.evaluation.evaluate import aggregate


def fake_record(
    model: str,
    seed: int,
    per_image: list[dict],
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """``config`` and ``metrics`` entries are added to the defaults; ``fields`` replace them.
    The overall scores are aggregated from ``per_image`` unless ``metrics`` gives them."""
    metrics = {"per_image": per_image, "inference_mpix_per_s": 1.0, **(metrics or {})}
    if "overall" not in metrics:
        metrics["overall"] = aggregate(per_image)
    return {
        "dataset": "toy",
        "model": model,
        "seed": seed,
        "labels": "manual",
        "profile": "cpu",
        "params": 1000,
        "train_time_s": 10.0 + seed,
        "precision": "32-true",
        "hardware": {"cpu": "test", "cores": 2, "gpu": None, "isa": "avx2"},
        "commit": "abc",
        "config": {
            "max_epochs": 1,
            "samples_per_epoch": 8,
            "batch_size": 2,
            "optimizer": "adam",
            "lr": 0.001,
            "loss": "bce",
            **(config or {}),
        },
        "data": {"splits": {"test": [p["id"] for p in per_image]}, "patch_size": 32},
        "metrics": metrics,
        **fields,
    }

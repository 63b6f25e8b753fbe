"""Optimizers and learning-rate schedules, by name."""

from __future__ import annotations

import torch

from seg_bench.errors import UserError

OPTIMIZERS = ("sgd", "adagrad", "adam", "adamw")
SCHEDULES = (None, "cosine", "plateau")


def check_optimizer(name: str, schedule: str | None = None) -> None:
    if name not in OPTIMIZERS:
        raise UserError(f"unknown optimizer '{name}'. Known: {', '.join(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule '{schedule}'. Known: none, cosine, plateau")


def build_optimizer(params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    check_optimizer(name)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

"""Optimizers and learning-rate schedules, by name."""

from __future__ import annotations

import torch

from seg_bench.registry import OPTIMIZERS


@OPTIMIZERS.register("sgd", "SGD with momentum")
def sgd(params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("adagrad", "Adagrad")
def adagrad(params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", "Adam")
def adam(params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw", "AdamW (decoupled weight decay)")
def adamw(params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def build_optimizer(params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9):
    return OPTIMIZERS.create(
        name, params=params, lr=lr, weight_decay=weight_decay, momentum=momentum
    )

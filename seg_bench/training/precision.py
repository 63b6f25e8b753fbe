"""Which numeric precision a run trains in."""

from __future__ import annotations

from seg_bench.inference.device import uses_gpu


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions on AMX tiles.

    Without AMX, bf16 autocast on the CPU is no gain: 0.8-1.0x of float32 on an AVX-512 Xeon,
    and 20-100x slower on an AVX2-only EPYC, where oneDNN has no bf16 kernels at all
    (benchmarks/bench_precision.py measures it on any machine).
    """
    from seg_bench.hardware import cpu_flags

    return "amx_bf16" in cpu_flags()


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``auto``: 16-bit mixed precision on GPUs; bf16 on CPUs with AMX; float32 elsewhere."""
    if precision != "auto":
        return precision
    if uses_gpu(accelerator):
        return "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"

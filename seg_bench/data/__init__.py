"""Datasets: importing this package registers every built-in one."""

from seg_bench.data.base import DATASETS, Sample, SegmentationDataModule, create_datamodule

from seg_bench.data import synthetic  # noqa: E402,F401  (registration side effects)

__all__ = ["DATASETS", "Sample", "SegmentationDataModule", "create_datamodule"]

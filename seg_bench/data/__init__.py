"""Datasets: importing this package registers every built-in one."""

from seg_bench.data import dsb2018, epfl, folder, isbi2012, isbi2013, ncmir, synthetic  # noqa: E402,F401  (registration side effects)
from seg_bench.data.base import DATASETS, Sample, SegmentationDataModule, create_datamodule

__all__ = ["DATASETS", "Sample", "SegmentationDataModule", "create_datamodule"]

"""Data: the DataModule contract (``base``), reading files (``io``), downloading and checking
copies (``download``, ``check``), RLE (``rle``), one file per dataset (``datasets/``) and
augmentation presets (``augment/``)."""

from seg_bench.data.base import Sample, SegmentationDataModule
from seg_bench.data.options import create_datamodule
from seg_bench.registry import DATASETS

__all__ = ["DATASETS", "Sample", "SegmentationDataModule", "create_datamodule"]

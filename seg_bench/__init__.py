"""seg-bench: train and compare segmentation networks on biomedical images under one protocol."""

__version__ = "0.1.0"

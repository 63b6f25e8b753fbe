"""Training: what is learned and how a run is driven.

* ``task.py``: ``SegmentationTask``, the LightningModule (model, loss, steps, optimizer); no
  device, precision or data code in it.
* ``trainer.py``: one run, config -> DataModule + task + Lightning Trainer -> best checkpoint.
* ``precision.py``: which numeric precision a run trains in.
* ``losses.py`` / ``optimizers.py``: registered by name (``seg_bench.registry``).
* ``callbacks.py``: callbacks of the training loop; ``checkpoint_io.py``: atomic checkpoints.
"""

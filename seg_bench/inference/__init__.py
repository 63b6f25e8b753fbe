"""Inference: a trained network applied to whole images, stacks and folders.

* ``sliding_window.py``: tiled prediction with Gaussian blending and D4 test-time augmentation.
* ``outputs.py``: logits -> probabilities and class maps; ``postprocess.py``: masks -> instances
  (threshold, watershed, hole filling, small-object removal), the label-image steps it shares
  with ``instances.py`` (the named methods) in ``objects.py``; ``tuning.py``: a method's
  parameters searched on validation images.
* ``checkpoint.py``: a checkpoint -> the network it holds, built from the registry (no training
  code needed); ``device.py``: where inference runs.
* ``predict.py``: ``seg-bench predict``, files in, masks/probabilities/instances/DSB CSV out.
"""

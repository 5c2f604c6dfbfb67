"""Localisation baselines run through the same data, checkpoint, evaluation and predict code as CAVGA.

* ``AE-L2`` and ``AE-SSIM``: the convolutional autoencoder of Bergmann et al. 2019 (the paper's [6]),
  trained with a per-pixel L2 or an SSIM loss (:mod:`.ae`).
* ``PatchCore``: a PatchCore-like reference, not part of the paper: pretrained EfficientNet-Lite0
  patch features, a k-center coreset memory bank and 1-NN distances (:mod:`.patchcore`).

Select one with ``cavga train --model AE-L2|AE-SSIM|PatchCore``; settings in the ``baseline``
config section; docs/baselines.md explains maps, scores and thresholds.
"""

BASELINES_HINT = 'pip install "cavga[baselines]"'

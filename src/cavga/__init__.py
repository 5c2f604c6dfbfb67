"""cavga: CAVGA (Venkataramanan et al., ECCV 2020), attention-guided anomaly localization.

The Python interface (:mod:`cavga.api`, docs/api.md): ``cavga.load(RUN_OR_EXPORTED)`` gives a
predictor whose ``predict(images)`` answers with :class:`Prediction` (score, verdict, map, mask).
They are imported on first use, so ``import cavga`` and the command line stay light.
"""

__version__ = "0.1.0"

_API = ("ImageInput", "Prediction", "Predictor", "load", "predict_images")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'cavga' has no attribute {name!r}")

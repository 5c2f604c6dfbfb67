"""Deployable inference: the whole inference path as TorchScript or ONNX (``cavga export``)."""

from .analytic import AnalyticGradCAM, check_exportable
from .files import FORMATS, ExportedPredictor, export_run, is_exported_model
from .graph import InferenceGraph

__all__ = [
    "FORMATS",
    "AnalyticGradCAM",
    "ExportedPredictor",
    "InferenceGraph",
    "check_exportable",
    "export_run",
    "is_exported_model",
]

"""Lightning callbacks that measure and save during training; name them in a config's
``trainer.callbacks`` with ``class_path: lightning_xllama.callbacks.<Name>``."""

from lightning_xllama.callbacks.base import (
    EvaluationCallback,
    EvaluationResult,
    Generation,
    GenerationEvaluation,
)
from lightning_xllama.callbacks.checkpoint import ResumableCheckpoint
from lightning_xllama.callbacks.export import HFExport
from lightning_xllama.callbacks.judge import JudgeEvaluation
from lightning_xllama.callbacks.prediction_writer import JsonlPredictionWriter
from lightning_xllama.callbacks.probe import RepresentationProbe
from lightning_xllama.callbacks.qa import QAEvaluation
from lightning_xllama.callbacks.run_record import RunRecord
from lightning_xllama.callbacks.summary import MetricsSummary
from lightning_xllama.callbacks.translation import TranslationEvaluation

__all__ = [
    "EvaluationCallback",
    "EvaluationResult",
    "Generation",
    "GenerationEvaluation",
    "HFExport",
    "JsonlPredictionWriter",
    "JudgeEvaluation",
    "MetricsSummary",
    "QAEvaluation",
    "RepresentationProbe",
    "ResumableCheckpoint",
    "RunRecord",
    "TranslationEvaluation",
]

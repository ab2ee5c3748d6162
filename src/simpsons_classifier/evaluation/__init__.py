"""How good a trained model is: metrics, per-class scores, the confusion matrix and the pairs it confuses."""

from .evaluate import evaluate_run
from .report import write_report

__all__ = ["evaluate_run", "write_report"]

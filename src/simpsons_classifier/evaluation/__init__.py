"""How good a trained model is: metrics, per-class scores, the confusion matrix and the pairs it confuses."""

from .evaluate import ensure_evaluated, evaluate_run
from .report import write_evaluation
from .results import EvalResult, OpenSetFigures

__all__ = ["EvalResult", "OpenSetFigures", "ensure_evaluated", "evaluate_run", "write_evaluation"]

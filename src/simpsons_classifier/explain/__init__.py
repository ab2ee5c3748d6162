"""Pictures of what a trained model looks at and what it learned: Grad-CAM, kernels, feature maps."""

from .run import CONFUSED_PAIRS_SHOWN, explain_run

__all__ = ["CONFUSED_PAIRS_SHOWN", "explain_run"]

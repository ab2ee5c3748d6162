"""Pictures of what a trained model looks at and what it learned: Grad-CAM, kernels, feature maps."""

from .run import explain_run

__all__ = ["explain_run"]

"""Backbones with a new head, their ImageNet weights, and the stages the training schedule freezes by name."""

from .factory import create_model, data_config
from .stages import param_groups, set_trainable_stages, stage_modules
from .weights import WeightsError

__all__ = ["create_model", "data_config", "param_groups", "set_trainable_stages", "stage_modules", "WeightsError"]

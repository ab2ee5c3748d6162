"""Backbones with a new head, their ImageNet weights, the family registry that says which of their modules the
toolkit addresses, and the stages the training schedule freezes by name."""

from .factory import create_model, data_config
from .features import (FeaturesAndLogits, PenultimateAndStages, PenultimateBesideDiscovery, PenultimateFeatures,
                       discovery_embedding)
from .families import ANY_TIMM_MODEL, FAMILIES, ModelFamily, family_of
from .stages import freeze_frozen_norms, param_groups, set_trainable_stages, stage_modules
from .weights import WeightsError

__all__ = [
    "ANY_TIMM_MODEL",
    "FAMILIES",
    "FeaturesAndLogits",
    "ModelFamily",
    "PenultimateAndStages",
    "PenultimateBesideDiscovery",
    "PenultimateFeatures",
    "WeightsError",
    "create_model",
    "data_config",
    "discovery_embedding",
    "family_of",
    "freeze_frozen_norms",
    "param_groups",
    "set_trainable_stages",
    "stage_modules",
]

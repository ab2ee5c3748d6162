"""Everything the toolkit knows about a backbone family, in one table; supporting a family is one entry.

timm already answers two questions the same way for every architecture: ``pretrained_cfg["classifier"]`` names
the classifier and ``feature_info[-1]["module"]`` the last feature stage (ResNet ``layer4``, EfficientNet
``blocks.6``). A :class:`ModelFamily` keeps only what timm does not say: modules that feed the classifier alone,
the Grad-CAM target layer where it is not the last feature stage (pytorch-grad-cam's docs name ``layer4[-1]``
for ResNet), and which convolutions the kernel pictures show. A detector's feature pyramid reads the stages at
strides 8, 16 and 32 from timm's ``feature_info`` too (``pyramid_stages``).

Module paths are dotted names as in ``named_modules()`` whose numbers may count from the end, so that one path
fits every depth of a family: ``layer4.-1`` is the last block of resnet18 and of resnet101 alike.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from timm.models import EfficientNet, MobileNetV3, ResNet
from torch import nn


PYRAMID_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class ModelFamily:
    """One timm model class and the modules this toolkit addresses in it."""

    model_class: type[nn.Module]
    spatial_kernels: str | None  # the spatial (3×3) convolution whose filters are pictured; None: no pictures
    pointwise_kernels: str | None = None  # the 1×1 one pictured as a matrix; a path the model lacks means none
    extra_head_modules: tuple[str, ...] = ()  # trained with the classifier: they feed nothing else
    gradcam_layer: str | None = None  # None: timm's last feature stage

    @property
    def name(self) -> str:
        return self.model_class.__name__

    def head(self, model: nn.Module) -> list[nn.Module]:
        """timm's classifier and the modules that only feed it."""
        return [submodule(model, path) for path in (model.pretrained_cfg["classifier"], *self.extra_head_modules)]

    def last_stage(self, model: nn.Module) -> nn.Module:
        return submodule(model, model.feature_info[-1]["module"])

    def pyramid_stages(self, model: nn.Module) -> list[int]:
        """The feature stages a detector's feature pyramid reads: those at strides 8, 16 and 32 (FPN's C3-C5),
        as indices of timm's ``feature_info``, which ``forward_intermediates`` takes."""
        reductions = [info["reduction"] for info in model.feature_info]
        missing = [r for r in PYRAMID_STRIDES if r not in reductions]
        if missing:
            raise ValueError(f"{self.name}: no feature stage at stride {missing[0]}; a detector needs strides "
                             f"{PYRAMID_STRIDES} (its stages are at {reductions})")
        return [reductions.index(r) for r in PYRAMID_STRIDES]

    def gradcam_target(self, model: nn.Module) -> nn.Module:
        """The layer whose activations and gradients Grad-CAM weighs: the last spatial map before pooling."""
        return self.last_stage(model) if self.gradcam_layer is None else submodule(model, self.gradcam_layer)

    def kernel_convs(self, model: nn.Module) -> tuple[nn.Conv2d | None, nn.Conv2d | None]:
        """The spatial convolution and the 1×1 one (None when this model has none) whose kernels are pictured."""
        if self.spatial_kernels is None:
            return None, None
        pointwise = None
        if self.pointwise_kernels is not None:
            with contextlib.suppress(AttributeError):
                pointwise = submodule(model, self.pointwise_kernels)
        return submodule(model, self.spatial_kernels), pointwise


FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(ResNet, spatial_kernels="layer4.-1.conv2", pointwise_kernels="layer4.-1.conv3",  # BasicBlocks: no 1×1
                gradcam_layer="layer4.-1"),
    ModelFamily(EfficientNet, spatial_kernels="blocks.-1.-1.conv_dw", pointwise_kernels="blocks.-1.-1.conv_pwl",
                extra_head_modules=("conv_head", "bn2"), gradcam_layer="conv_head"),
    # The last stage is a lone 1×1 conv, so the depthwise filters are the stage's before; conv_head runs after
    # the pool and feeds only the classifier.
    ModelFamily(MobileNetV3, spatial_kernels="blocks.-2.-1.conv_dw", pointwise_kernels="conv_head",
                extra_head_modules=("conv_head",)),
)


ANY_TIMM_MODEL = ModelFamily(nn.Module, spatial_kernels=None)
"""Any other timm architecture: head, last stage and Grad-CAM layer from timm's own description of it; no kernel
pictures, since which convolutions are worth showing differs by architecture."""


def family_of(model: nn.Module) -> ModelFamily:
    """The family of ``model``: a registered one, else :data:`ANY_TIMM_MODEL` for a timm model that describes its
    classifier and stages; a ValueError naming its class and the known families for anything else."""
    for family in FAMILIES:
        if isinstance(model, family.model_class):
            return family
    if getattr(model, "pretrained_cfg", None) and getattr(model, "feature_info", None):
        return ANY_TIMM_MODEL
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    what = f"{architecture} ({type(model).__name__})" if architecture else type(model).__name__
    raise ValueError(
        f"backbone {what} is of no known model family ({', '.join(f.name for f in FAMILIES)}); "
        f"nor a timm model; a new family is one ModelFamily entry in simpsons_classifier/models/families.py"
    )


def submodule(model: nn.Module, path: str) -> nn.Module:
    """``model``'s module at a dotted ``path`` whose numeric parts index containers and may be negative."""
    module = model
    for part in path.split("."):
        module = module[int(part)] if part.lstrip("-").isdigit() else module.get_submodule(part)
    return module

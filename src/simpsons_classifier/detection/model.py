"""The detector: torchvision's FCOS on a toolkit backbone, through a feature pyramid.

Why FCOS: it is anchor-free, so there are no anchor sizes and ratios to tune to characters that range from a face
to a full standing body, and it has the best COCO box AP of torchvision's detectors that take a custom backbone
(FCOS-R50 39.2 against Faster R-CNN-R50 37.0 and RetinaNet-R50 36.4) in one stage, which costs less on a CPU than
a region-proposal network plus a second stage.

The backbone is the classifier model itself (any timm model the family registry describes): its
``forward_intermediates`` gives the stages at strides 8, 16 and 32, which torchvision's ``FeaturePyramidNetwork``
turns into P3-P5 plus P6-P7, the five levels FCOS reads; the classifier's own head is removed.
torchvision's ``BackboneWithFPN`` does the same for torchvision backbones through ``IntermediateLayerGetter``,
which cannot reach into timm's block lists.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from ..models import data_config, family_of
from .config import DetectConfig

LEVEL_STRIDES = (8, 16, 32, 64, 128)
"""P3-P7: FCOS assigns each object to one level by its size, and its "anchors" are one point per location."""
SCORE_FLOOR = 0.05
"""Detections below this score are dropped before non-maximum suppression (torchvision's COCO setting); enough
low-scoring ones are kept for average precision, whose curve runs down to them."""
DETECTIONS_PER_SCENE = 50


class PyramidBackbone(nn.Module):
    """A timm classifier seen as FCOS's backbone: the feature pyramid over its stride-8/16/32 stages."""

    def __init__(self, model: nn.Module, channels: int) -> None:
        super().__init__()
        self.body = model
        self.stages = family_of(model).pyramid_stages(model)
        in_channels = [model.feature_info[i]["num_chs"] for i in self.stages]
        self.fpn = FeaturePyramidNetwork(in_channels, channels, extra_blocks=LastLevelP6P7(channels, channels))
        self.out_channels = channels  # what torchvision's detectors read

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body.forward_intermediates(images, indices=self.stages, intermediates_only=True)
        return self.fpn(OrderedDict((str(level), feature) for level, feature in enumerate(features)))


def create_detector(backbone: nn.Module, num_classes: int, config: DetectConfig) -> FCOS:
    """FCOS for ``num_classes`` characters (labels 0..num_classes-1) on ``backbone`` (a timm classifier with its
    weights), images resized so their longer side is ``config.scene_size`` and normalised as the backbone was
    pre-trained; boxes come back in the input image's pixels."""
    if not hasattr(backbone, "forward_intermediates"):
        raise ValueError(f"backbone {type(backbone).__name__} cannot give its intermediate stages (timm's "
                         "forward_intermediates), which the detector's feature pyramid reads")
    normalisation = data_config(backbone)
    backbone.reset_classifier(0)  # a detector's weights are the same whichever classifier they started from
    pyramid = PyramidBackbone(backbone, config.fpn_channels)
    freeze_early_stages(pyramid, config.trainable_stages)
    return FCOS(
        pyramid,
        num_classes,
        min_size=config.scene_size,
        max_size=config.scene_size,
        image_mean=list(normalisation["mean"]),
        image_std=list(normalisation["std"]),
        anchor_generator=AnchorGenerator(tuple((s,) for s in LEVEL_STRIDES), ((1.0,),) * len(LEVEL_STRIDES)),
        head=FCOSHead(config.fpn_channels, 1, num_classes, num_convs=config.head_convs),
        score_thresh=SCORE_FLOOR,
        detections_per_img=DETECTIONS_PER_SCENE,
    )


def freeze_early_stages(pyramid: PyramidBackbone, trainable_stages: int) -> None:
    """Freeze the backbone up to its last ``trainable_stages`` feature stages; the classifier's head, never run,
    stays frozen too."""
    body = pyramid.body
    body.requires_grad_(False)
    if trainable_stages == 0:
        return
    stages = body.feature_info[-trainable_stages:]
    first = stages[0]["module"]
    last = body.feature_info[-1]["module"]
    training = False
    for name, module in body.named_modules():
        training = training or name == first
        if training and name.count(".") <= first.count("."):
            module.requires_grad_(True)
        if name == last:
            break


def set_training(detector: FCOS) -> None:
    """Training mode, but with the backbone's BatchNorm statistics fixed, as torchvision's detectors fix them
    (``FrozenBatchNorm2d``): a batch of a few scenes estimates them worse than ImageNet did."""
    detector.train()
    for module in detector.backbone.body.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()

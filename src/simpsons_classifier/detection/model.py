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
from torch.nn import functional as F
from torchvision.ops import FeaturePyramidNetwork, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from ..models import data_config, family_of
from .config import DetectConfig

LEVEL_STRIDES = (8, 16, 32, 64, 128)
"""P3-P7: FCOS assigns each object to one level by its size, and its "anchors" are one point per location."""
SCORE_FLOOR = 0.05
"""Detections below this score are dropped before non-maximum suppression (torchvision's COCO setting); enough
low-scoring ones are kept for average precision, whose curve runs down to them."""
DETECTIONS_PER_SCENE = 50
NAMER_POOL = (4, 4)
"""RoIAlign's grid over a box on the stride-32 map, which the classifier's head path pools."""
BOX_JITTER = 0.1


class PyramidBackbone(nn.Module):
    """A timm classifier seen as FCOS's backbone: the feature pyramid over its stride-8/16/32 stages. The
    classifier's own final feature map of the last forward pass (its ``forward_features``: for EfficientNet after
    the 1×1 ``conv_head``) stays in ``final``, for the namer."""

    def __init__(self, model: nn.Module, channels: int) -> None:
        super().__init__()
        self.body = model
        self.stages = family_of(model).pyramid_stages(model)
        in_channels = [model.feature_info[i]["num_chs"] for i in self.stages]
        self.fpn = FeaturePyramidNetwork(in_channels, channels, extra_blocks=LastLevelP6P7(channels, channels))
        self.out_channels = channels  # what torchvision's detectors read
        self.final: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        self.final, features = self.body.forward_intermediates(images, indices=self.stages)
        return self.fpn(OrderedDict((str(level), feature) for level, feature in enumerate(features)))


class CharacterDetector(nn.Module):
    """FCOS finds the characters (one class: "a character"); a namer on the same backbone names each box.

    Why two heads: FCOS's per-class focal-loss scores learn 50 look-alike characters slowly; after 4,800 scenes a
    50-class FCOS boxed 93 % of the stand-in's held-out characters but ranked the right name first on only 40 % of
    them (mAP@.5 0.46). Finding a character is one easy class, and naming one is the classifier's problem, which a
    softmax over the box's features learns as fast as the classifier does: RoIAlign on the classifier's final
    feature map (as Faster R-CNN's second stage reads its box features), then the classifier's own head path
    (timm's ``forward_head``: pooling, and for MobileNetV3 its 1×1 conv) and a linear layer, so the box is named
    from the features an ImageNet linear probe already reads well (mAP@.5 0.767 after 5,600 scenes; README). A
    box's score for a name is the finder's score times the namer's probability of that name.

    Training takes torchvision's ``(images, targets)`` and returns the losses: FCOS's three and ``naming`` (cross
    entropy over the true boxes, each also jittered once, as predicted boxes are never exact). Inference returns
    torchvision's ``boxes`` / ``scores`` / ``labels`` per image in its own pixels, each box once per name among its
    ``names_per_box`` most probable.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, config: DetectConfig) -> None:
        super().__init__()
        normalisation = data_config(backbone)
        backbone.reset_classifier(0)  # a detector's weights are the same whichever classifier they started from
        pyramid = PyramidBackbone(backbone, config.fpn_channels)
        freeze_early_stages(pyramid, config.trainable_stages)
        self.scene_size = config.scene_size
        self.finder = FCOS(
            pyramid,
            1,
            min_size=config.scene_size,
            max_size=config.scene_size,
            image_mean=list(normalisation["mean"]),
            image_std=list(normalisation["std"]),
            anchor_generator=AnchorGenerator(tuple((s,) for s in LEVEL_STRIDES), ((1.0,),) * len(LEVEL_STRIDES)),
            head=FCOSHead(config.fpn_channels, 1, 1, num_convs=config.head_convs),
            score_thresh=SCORE_FLOOR,
            detections_per_img=DETECTIONS_PER_SCENE,
        )
        self.namer = nn.Linear(pyramid.body.num_features, num_classes)

    @property
    def backbone(self) -> PyramidBackbone:
        return self.finder.backbone

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None, names_per_box: int = 1):
        if self.training:
            found = [{"boxes": t["boxes"], "labels": torch.zeros_like(t["labels"])} for t in targets]
            losses = self.finder(images, found)
            boxes = [torch.cat([t["boxes"], _jittered(t["boxes"])]) for t in targets]
            labels = torch.cat([t["labels"].repeat(2) for t in targets])
            return losses | {"naming": F.cross_entropy(self._name(images, boxes), labels)}
        found = self.finder(images)
        logits = self._name(images, [f["boxes"] for f in found])
        outputs, start = [], 0
        for f in found:
            count = len(f["boxes"])
            probabilities = logits[start:start + count].softmax(dim=1)
            start += count
            top, names = probabilities.topk(min(names_per_box, probabilities.shape[1]), dim=1)
            outputs.append({"boxes": f["boxes"].repeat_interleave(top.shape[1], dim=0),
                            "scores": (f["scores"][:, None] * top).flatten(),
                            "labels": names.flatten()})
        return outputs

    def _name(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        """Class logits of ``boxes`` (in each image's own pixels) from the final feature map of the last forward
        pass, whose input the finder resized so the longer side is ``scene_size``."""
        scaled = [b * (self.scene_size / max(image.shape[-2:])) for b, image in zip(boxes, images)]
        pooled = roi_align(self.backbone.final, scaled, output_size=NAMER_POOL, spatial_scale=1 / 32,
                           sampling_ratio=2, aligned=True)
        return self.namer(self.backbone.body.forward_head(pooled, pre_logits=True))


def create_detector(backbone: nn.Module, num_classes: int, config: DetectConfig) -> CharacterDetector:
    """The detector of ``num_classes`` characters (labels 0..num_classes-1) on ``backbone`` (a timm classifier
    with its weights); images are resized so their longer side is ``config.scene_size`` and normalised as the
    backbone was pre-trained; boxes come back in the input image's pixels."""
    if not hasattr(backbone, "forward_intermediates"):
        raise ValueError(f"backbone {type(backbone).__name__} cannot give its intermediate stages (timm's "
                         "forward_intermediates), which the detector's feature pyramid reads")
    return CharacterDetector(backbone, num_classes, config)


def _jittered(boxes: torch.Tensor) -> torch.Tensor:
    """``boxes`` with each side moved by up to ``BOX_JITTER`` of the box's width or height (torch's RNG)."""
    sizes = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + (torch.rand_like(boxes) * 2 - 1) * BOX_JITTER * sizes


def freeze_early_stages(pyramid: PyramidBackbone, trainable_stages: int) -> None:
    """Freeze the backbone up to its last ``trainable_stages`` feature stages; the modules of its head path (the
    namer's input) train with them."""
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
    for module in family_of(body).head(body):
        module.requires_grad_(True)


def set_training(detector: CharacterDetector) -> None:
    """Training mode, but with the backbone's BatchNorm statistics fixed, as torchvision's detectors fix them
    (``FrozenBatchNorm2d``): a batch of a few scenes estimates them worse than ImageNet did."""
    detector.train()
    for module in detector.backbone.body.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()

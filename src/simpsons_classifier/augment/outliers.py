"""Outlier exposure: teach the classifier that an image without a character belongs to none of its classes.

Hendrycks et al. (2019) add images from outside the training classes to each batch and train them towards the
uniform distribution, so that the model's confidence, which the open-set scores read, stays low away from the
characters. Here the outliers are crops of the background pool that background mixing pastes characters onto
(photographs, gradients, blurred noise; ``background_dir`` when given): scenery without anyone in it, which is
what a frame with no known character mostly is. Cross-entropy to a uniform target is Hendrycks' loss (the mean
negative log-probability over classes), and label smoothing leaves a uniform target unchanged, so the outliers
go through the same loss as the characters, weighted by their share of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
from torch.nn.functional import one_hot
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from simpsons_classifier.augment.background import BackgroundSampler, as_uint8_rgb
from simpsons_classifier.augment.recipe import BACKGROUND_JITTER


class BackgroundOutliers:
    """``draw(batch_size, height, width)``: ``round(share * batch_size)`` background crops to append to a batch,
    3 x height x width uint8 each.

    Each crop is a random part of a random background, with the batch's aspect ratio (drawn by
    :class:`~.background.BackgroundSampler`, as background mixing draws them), mirrored half the time and
    colour-jittered as mixed backgrounds are. Randomness comes from torch's RNG only, so a resumed run draws the
    same outliers.
    """

    def __init__(self, backgrounds: Sequence[PIL.Image.Image | torch.Tensor], share: float) -> None:
        if share <= 0:
            raise ValueError(f"outlier exposure: share={share} must be above 0")
        self._backgrounds = [as_uint8_rgb(background) for background in backgrounds]
        self._sampler = BackgroundSampler([background.shape[-2:] for background in self._backgrounds], p=1.0)
        self._jitter = v2.ColorJitter(*BACKGROUND_JITTER)
        self.share = share

    def draw(self, batch_size: int, height: int, width: int) -> torch.Tensor:
        crops = [self._crop(height, width) for _ in range(round(self.share * batch_size))]
        return torch.stack(crops) if crops else torch.empty(0, 3, height, width, dtype=torch.uint8)

    def _crop(self, height: int, width: int) -> torch.Tensor:
        draw = self._sampler(height, width)
        crop = F.resized_crop(self._backgrounds[draw.index], *draw.box, size=[height, width], antialias=True)
        return self._jitter(F.horizontal_flip(crop) if draw.flip else crop)


def with_uniform_rows(targets: torch.Tensor, count: int, num_classes: int) -> torch.Tensor:
    """``targets`` (int labels B, or soft B x ``num_classes``) as soft targets with ``count`` uniform rows below:
    the targets of a batch with ``count`` outliers appended."""
    if targets.ndim == 1:
        targets = one_hot(targets, num_classes).float()
    uniform = torch.full((count, num_classes), 1 / num_classes, device=targets.device)
    return torch.cat([targets, uniform])

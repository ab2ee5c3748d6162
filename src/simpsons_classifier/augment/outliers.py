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

from simpsons_classifier.augment.background import BackgroundCrops, BackgroundSampler


class BackgroundOutliers:
    """``draw(batch_size, height, width)``: ``round(share * batch_size)`` background crops to append to a batch,
    3 x height x width uint8 each.

    Each crop is a random part of a random background, with the batch's aspect ratio, mirrored half the time and
    colour-jittered: drawn and made as background mixing's (:class:`~.background.BackgroundSampler`,
    :class:`~.background.BackgroundCrops`). Randomness comes from torch's RNG only, so a resumed run draws the
    same outliers.
    """

    def __init__(self, backgrounds: Sequence[PIL.Image.Image | torch.Tensor], share: float) -> None:
        if share <= 0:
            raise ValueError(f"outlier exposure: share={share} must be above 0")
        self._crops = BackgroundCrops(backgrounds)
        self._sampler = BackgroundSampler(self._crops.sizes, p=1.0)
        self.share = share

    def draw(self, batch_size: int, height: int, width: int) -> torch.Tensor:
        count = round(self.share * batch_size)
        crops = [self._crops(self._sampler(height, width), height, width) for _ in range(count)]
        return torch.stack(crops) if crops else torch.empty(0, 3, height, width, dtype=torch.uint8)


def with_uniform_rows(targets: torch.Tensor, count: int, num_classes: int) -> torch.Tensor:
    """``targets`` (int labels B, or soft B x ``num_classes``) as soft targets with ``count`` uniform rows below:
    the targets of a batch with ``count`` outliers appended."""
    if targets.ndim == 1:
        targets = one_hot(targets, num_classes).float()
    uniform = torch.full((count, num_classes), 1 / num_classes, device=targets.device)
    return torch.cat([targets, uniform])

"""The optional GPU path: the fused engine's transforms on a whole batch on the device (``gpu_augment: true``).

Two stages. Per sample, in the DataLoader workers, :class:`CanvasTransform` does what needs the full frame and
OpenCV: the weak/strong choice, background mixing (its mask needs a flood fill over the frame), and a resize of the
whole image to a fixed square canvas so that samples collate. Per batch, on the device, :class:`DeviceAugment`
draws every sample's parameters with the CPU engine's own samplers (same ranges, torch's RNG in the main
process, so epochs reseeded by the trainer reproduce) and applies them with batched torch ops: one
``grid_sample`` for all the geometry (crop, flip, rotation, perspective, elastic), colour matrices as one
batched matmul around a per-sample hue shift, a per-sample Gaussian blur as one grouped convolution,
normalisation and erasing as masks. The canvas is a second resampling the CPU engine does not have; at
:data:`CANVAS_SCALE` times the output size it costs little sharpness.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from simpsons_classifier.augment.background import background_pool
from simpsons_classifier.augment.colour import HUE, affine_matrix, jitter_steps
from simpsons_classifier.augment.fused import Branch, Normalise, as_rgb_array, strong_branch, weak_branch
from simpsons_classifier.augment.geometry import Warp, crop_to_source, elastic_nodes, pixel_grid, shrink_factor
from simpsons_classifier.augment.mixing import ArrayBackgroundMixing
from simpsons_classifier.augment.recipe import SOLARIZE_THRESHOLD, draw_strong
from simpsons_classifier.config import Config

CANVAS_SCALE = 1.5
"""Side of the canvas a sample travels to the device on, as a multiple of image_size: the smallest strong crop
(35 % of the area, 0.59 of each side) still spans 0.89 output widths of it, and a batch of 256 canvases at
224 px output is 87 MB of uint8."""
STRONG, HEIGHT, WIDTH = range(3)
"""Columns of the per-sample metadata: strong branch (0/1), and the size of the image the canvas shows."""


class CanvasTransform:
    """Per-sample CPU stage: RGB image -> (uint8 3 x canvas x canvas tensor of the whole image, float32
    [strong, height, width]). Draws the weak/strong choice (:func:`~.recipe.draw_strong`) and mixes backgrounds
    into strong samples."""

    def __init__(self, canvas: int, p_strong: float, mixing: ArrayBackgroundMixing | None) -> None:
        self.canvas = canvas
        self.p_strong = p_strong
        self.mixing = mixing

    def __call__(self, image: PIL.Image.Image | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        array = as_rgb_array(image)
        strong = draw_strong(self.p_strong)
        if strong and self.mixing is not None:
            array = self.mixing(array)
        # average down by an integer factor first (fast and alias-free), so the bilinear resize shrinks < 2x
        shrink = shrink_factor((0, 0, *array.shape[:2]), self.canvas)
        if shrink > 1:
            height, width = (side - side % shrink for side in array.shape[:2])
            array = cv2.resize(
                array[:height, :width], (width // shrink, height // shrink), interpolation=cv2.INTER_AREA
            )
        height, width = (side * shrink for side in array.shape[:2])
        canvas = cv2.resize(array, (self.canvas, self.canvas), interpolation=cv2.INTER_LINEAR)
        meta = torch.tensor([strong, height, width], dtype=torch.float32)
        return torch.from_numpy(canvas).permute(2, 0, 1).contiguous(), meta


class DeviceAugment:
    """Batch stage: (canvases uint8 B x 3 x C x C, metadata B x 3) -> normalised float B x 3 x size x size on
    ``device``, every sample with its own random parameters. ``per_sample`` is the matching CPU stage."""

    def __init__(
        self, weak: Branch, strong: Branch, per_sample: CanvasTransform, normalise: Normalise, device: torch.device
    ) -> None:
        self.weak = weak
        self.strong = strong
        self.per_sample = per_sample
        self.device = torch.device(device)
        self.size = weak.geometry.size
        self.normalise = normalise

    def __call__(self, canvas: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        canvas = canvas.to(self.device, non_blocking=True)
        branches = [self.strong if strong else self.weak for strong in meta[:, STRONG].tolist()]
        sizes = meta[:, [HEIGHT, WIDTH]].int().tolist()
        warps = [branch.geometry.sample(height, width) for branch, (height, width) in zip(branches, sizes)]
        images = self._geometry(canvas, warps, sizes)
        images = self._colour(images, branches)
        sigmas = np.concatenate([branch.blur.sample(1) for branch in branches])
        images = gaussian_blur(images, torch.from_numpy(sigmas).to(self.device), self.weak.blur.kernel_size)
        images = self.normalise.floats(images)
        boxes = [branch.erasing.sample(self.size) for branch in branches]
        return erase(images, boxes)

    def _geometry(self, canvas: torch.Tensor, warps: list[Warp], sizes: list[list[int]]) -> torch.Tensor:
        """One bilinear sampling of every canvas through its warp; black outside the crop, like the CPU path."""
        size, device = self.size, self.device
        inner = torch.tensor(np.stack([warp.inner for warp in warps]), dtype=torch.float32, device=device)
        # crop pixel -> source pixel -> grid_sample's [-1, 1] coordinates of the canvas (which shows the source)
        to_source = np.stack(
            [_to_unit_square(*source) @ crop_to_source(warp.box, size) for warp, source in zip(warps, sizes)]
        )
        to_source = torch.tensor(to_source[:, :2], dtype=torch.float32, device=device)
        points = torch.from_numpy(pixel_grid(size).copy()).to(device).expand(len(warps), -1, -1, -1)
        points = points + self._displacements(warps)
        homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
        crop = torch.einsum("bij,bhwj->bhwi", inner, homogeneous)
        crop = crop[..., :2] / crop[..., 2:]
        # coverage of the crop (1 inside, 0 beyond, a one-pixel ramp between): torchvision's zero fill
        coverage = ((crop + 1).clamp(0, 1) * (size - crop).clamp(0, 1)).prod(dim=-1)
        grid = torch.einsum("bij,bhwj->bhwi", to_source, torch.cat([crop, torch.ones_like(crop[..., :1])], dim=-1))
        canvas = canvas.float().div_(255)
        images = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return images * coverage[:, None]

    def _displacements(self, warps: list[Warp]) -> torch.Tensor:
        """Elastic offsets, B x size x size x 2: the coarse grids upsampled bicubically (as cv2.INTER_CUBIC)."""
        nodes = elastic_nodes(self.size, self.strong.geometry.elastic_sigma)
        coarse = np.zeros((len(warps), nodes, nodes, 2), np.float32)
        for i, warp in enumerate(warps):
            if warp.displacement is not None:
                coarse[i] = warp.displacement
        coarse = torch.from_numpy(coarse).to(self.device).permute(0, 3, 1, 2)
        fine = F.interpolate(coarse, size=(self.size, self.size), mode="bicubic", align_corners=False)
        return fine.permute(0, 2, 3, 1)

    def _colour(self, images: torch.Tensor, branches: list[Branch]) -> torch.Tensor:
        """The affine jitter drawn before the hue shift, the hue shift (HSV), the rest, grayscale, invert,
        solarize: as the CPU engine, with the contrast means measured on the device."""
        draws = [branch.colour.sample(1) for branch in branches]
        steps = [jitter_steps(draw.order[0]) for draw in draws]
        before = [affine_matrix(draw, 0, first, mean, finish=False)
                  for draw, (first, _), mean in zip(draws, steps, _means(images))]
        images = _apply_affine(images, before)
        hue = torch.tensor([draw.factors[0, HUE] for draw in draws], dtype=torch.float32, device=self.device)
        images = shift_hue(images, hue)
        after = [affine_matrix(draw, 0, rest, mean, finish=True)
                 for draw, (_, rest), mean in zip(draws, steps, _means(images))]
        images = _apply_affine(images, after)
        solarize = torch.tensor([bool(draw.solarize[0]) for draw in draws], device=self.device)[:, None, None, None]
        return torch.where(solarize & (images >= SOLARIZE_THRESHOLD), 1 - images, images)


def shift_hue(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Turn the hue of float RGB images in [0, 1] (B x 3 x H x W) by ``turns`` (B) of the colour wheel, in HSV.

    Each image comes out as torchvision's public ``adjust_hue(image, turn)`` makes it, to the bit: the same HSV
    (Pillow's) in the same float32 operations. Written here because adjust_hue takes one hue factor per call: a
    factor per sample would cost, on the GPU, a call per sample of some thirty small kernels and a copy to the
    device, where this is one batched pass. (On the CPU, where only the tests run it, calls per image are faster,
    since an image fits in the cache.)
    """
    hue, saturation, value = _rgb_to_hsv(images)
    return _hsv_to_rgb((hue + turns[:, None, None]).remainder_(1.0), saturation, value)


HSV_SECTORS = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])
"""Red, green and blue (rows) in each sixth of the hue wheel (columns), as indices into (value, p, q, t) of
:func:`_hsv_to_rgb`."""


def _rgb_to_hsv(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B x 3 x H x W RGB in [0, 1] -> hue (in turns, [0, 1)), saturation and value, each B x H x W. Greys (all
    channels equal) get hue and saturation 0; dividing by 1 there instead of 0 keeps NaNs out."""
    red, green, _ = images.unbind(dim=1)
    low, value = torch.aminmax(images, dim=1)
    grey = value == low
    chroma = value - low
    saturation = chroma / torch.where(grey, 1.0, value)
    below_red, below_green, below_blue = ((value[:, None] - images) / torch.where(grey, 1.0, chroma)[:, None]).unbind(
        dim=1
    )  # each channel's distance below the maximum, in chromas
    sixths = torch.where(
        value == red,
        below_blue - below_green,
        torch.where(value == green, below_red + 2.0 - below_blue, below_green + 4.0 - below_red),
    )
    return (sixths * (1.0 / 6.0) + 1.0).fmod_(1.0), saturation, value


def _hsv_to_rgb(hue: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Hue (in turns), saturation and value, each B x H x W -> B x 3 x H x W RGB in [0, 1]."""
    sixths = hue * 6
    sector = torch.floor(sixths)
    within = sixths - sector
    p = ((1.0 - saturation) * value).clamp_(0.0, 1.0)
    q = ((1.0 - saturation * within) * value).clamp_(0.0, 1.0)
    t = (saturation * within + (1.0 - saturation)) * value
    candidates = torch.stack([value, p, q, t.clamp_(0.0, 1.0)], dim=1)
    channels = HSV_SECTORS.to(hue.device)[:, sector.int().remainder_(6)].movedim(0, 1)
    return candidates.gather(1, channels)


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own Gaussian (sigma 0: unchanged), separably, with reflected borders (as
    torchvision and cv2.GaussianBlur)."""
    batch, channels, height, width = images.shape
    offsets = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - kernel_size // 2
    safe = sigmas.clamp_min(1e-6).to(images.dtype)[:, None]
    kernels = torch.exp(-0.5 * (offsets / safe) ** 2)
    kernels = torch.where(sigmas[:, None] > 0, kernels, (offsets == 0).to(images.dtype))
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    flat = images.reshape(1, batch * channels, height, width)
    pad = kernel_size // 2
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernels[:, None, None, :], groups=batch * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernels[:, None, :, None], groups=batch * channels)
    return flat.reshape(batch, channels, height, width)


def erase(images: torch.Tensor, boxes: Sequence[tuple[int, int, int, int] | None]) -> torch.Tensor:
    """Set each image's box (top, left, height, width; None: nothing) to 0."""
    size = images.shape[-1]
    limits = torch.tensor([box or (0, 0, 0, 0) for box in boxes], device=images.device)
    top, left, height, width = limits.T[:, :, None]
    positions = torch.arange(size, device=images.device)[None]
    rows = (positions >= top) & (positions < top + height)
    columns = (positions >= left) & (positions < left + width)
    return images.masked_fill_((rows[:, :, None] & columns[:, None, :])[:, None], 0.0)


def _apply_affine(images: torch.Tensor, matrices: list[np.ndarray]) -> torch.Tensor:
    """Apply per-sample 3 x 4 affine maps of 0..255 levels to images in [0, 1]; clip to [0, 1]."""
    affine = torch.tensor(np.stack(matrices), device=images.device)
    out = torch.einsum("bij,bjhw->bihw", affine[:, :, :3], images) + affine[:, :, 3, None, None] / 255
    return out.clamp_(0, 1)


def _means(images: torch.Tensor) -> np.ndarray:
    """Channel means on 0..255 levels, B x 3 (one device sync)."""
    return (images.mean(dim=(2, 3)) * 255).double().cpu().numpy()


def _to_unit_square(height: int, width: int) -> np.ndarray:
    """Pixel of a height x width image -> grid_sample's coordinates (align_corners=False)."""
    return np.array([[2 / width, 0.0, 1 / width - 1], [0.0, 2 / height, 1 / height - 1], [0.0, 0.0, 1.0]])


def build_device_augment(
    cfg: Config, mean: Sequence[float], std: Sequence[float], device: torch.device
) -> DeviceAugment | None:
    """The GPU path when ``cfg.gpu_augment`` and ``device`` is a GPU, else None (the CPU engine is used)."""
    if not cfg.gpu_augment:
        return None
    if torch.device(device).type != "cuda":
        warnings.warn(f"gpu_augment: training on {device}, not a GPU; augmenting on the CPU", stacklevel=2)
        return None
    return create_device_augment(cfg, background_pool(cfg), mean, std, device)


def create_device_augment(
    cfg: Config, backgrounds: Sequence[PIL.Image.Image], mean: Sequence[float], std: Sequence[float],
    device: torch.device,
) -> DeviceAugment:
    """The GPU path's two stages on any ``device`` (the tests run it on the CPU)."""
    weak, strong = weak_branch(cfg), strong_branch(cfg, backgrounds, erase_fill=(0, 0, 0))  # erased after normalising
    per_sample = CanvasTransform(round(CANVAS_SCALE * cfg.image_size), cfg.strong_aug_prob, strong.mixing)
    return DeviceAugment(weak, strong, per_sample, Normalise(mean, std), device)

"""Background mixing: paste the character of a training image onto a random background.

The classifier must recognise a character whatever is behind them. Training images come in two kinds: sprites
and studio shots on a flat backdrop, where the character can be cut out exactly, and full scenes (most Simpsons
frames), where no cut-out is possible without a segmentation model. :class:`BackgroundMixing` handles both; see
its docstring. :func:`load_backgrounds` supplies the backgrounds, from a user folder or from a built-in set that
needs no download.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from simpsons_classifier.augment.recipe import BACKGROUND_FLIP_PROB, BACKGROUND_JITTER, BACKGROUND_ZOOM
from simpsons_classifier.config import Config

log = logging.getLogger(__name__)

# --- foreground mask ---
BORDER_BAND_FRACTION = 0.02
"""Width of the image border used to estimate the backdrop colour, as a fraction of the shorter side."""
BACKDROP_TOLERANCE = 0.1
"""A pixel matches the backdrop when no channel differs from the border's median colour by more than this
(colours in [0, 1])."""
FLAT_BORDER_MIN_FRACTION = 0.8
"""The border counts as flat (an exact cut-out is possible) when at least this fraction of it matches the backdrop;
sprites touching an edge of the image still leave most of the border flat."""
MIN_FOREGROUND_FRACTION = 0.02
"""An exact cut-out keeping less of the image than this is not trusted (e.g. a blank image); the soft mask is used."""
MASK_DILATION_PX = 2
"""The exact foreground is grown by this many pixels so anti-aliased outlines stay with the character."""
MASK_FEATHER_SIGMA_PX = 1.0
"""Gaussian feathering of the exact mask's edge, in pixels."""
MASK_FEATHER_RADIUS_SIGMAS = 2
"""The feathering kernel reaches this many sigmas (95 % of the Gaussian's weight; 3 would cost twice as much)."""
MATCH, BACKDROP = 255, 128
"""Levels of the flood-filled match image: matches the backdrop colour / is connected to the edge."""
SOFT_MASK_INNER_RADIUS = 0.5
SOFT_MASK_OUTER_RADIUS = 1.0
"""The soft mask is 1 inside the centred ellipse of this relative radius (1 = touching the image's edges), falls
smoothly to 0 at the outer radius and is 0 beyond it (the corners)."""

# --- built-in backgrounds ---
BUILTIN_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
"""Photographs shipped inside the scikit-image wheel (``skimage/data``), read as files, so never a download; one
that a scikit-image version does not ship is skipped."""
BUILTIN_PROCEDURAL_SEED = 1234
"""Seed of the procedural backgrounds, so the built-in set is the same on every run."""
PROCEDURAL_GRADIENTS = 4
PROCEDURAL_NOISE_FIELDS = 4
PROCEDURAL_ASPECT = 4 / 3
NOISE_CELL_PX = 16
"""Side of one cell of the coarse random field that is upsampled into a smooth noise background."""
NOISE_BLUR_SIGMA_PX = 4.0


class BackgroundMixing(v2.Transform):
    """With probability ``p``, replace what is behind the character with a random background.

    "Mixing" is ``out = mask * image + (1 - mask) * background``, where ``mask`` estimates the character:

    * **Flat border** (sprites on white, studio shots): the backdrop colour is the median of a thin border band.
      Background is every pixel that matches that colour *and* is connected to the border, so enclosed regions of
      the same colour (the white of the eyes) stay with the character. The mask is the rest, dilated by
      :data:`MASK_DILATION_PX` to keep anti-aliased outlines and feathered by :data:`MASK_FEATHER_SIGMA_PX`:
      the character's pixels are kept exactly and the backdrop is replaced.
    * **Anything else** (full scenes, which is what most Simpsons frames are): no cut-out is possible, so the mask
      is a soft centred ellipse: the centre of the frame, where the character usually is, is kept, and the
      scene fades into the new background towards the edges and corners.

    The background is a random crop of one of ``backgrounds`` with the image's aspect ratio (side
    :data:`~.recipe.BACKGROUND_ZOOM` of the largest that fits), resized to the image, randomly flipped and
    colour-jittered (:data:`~.recipe.BACKGROUND_JITTER`) so the model cannot learn the backgrounds themselves.

    Accepts a PIL image or a 3-channel image tensor (uint8 or float in [0, 1]) and returns the same kind. Place it
    before geometric transforms, so that crops and rotations apply to the mixed image. Randomness comes from
    torch's RNG only.
    """

    _transformed_types = (PIL.Image.Image, tv_tensors.Image, F.is_pure_tensor)

    def __init__(self, backgrounds: Sequence[PIL.Image.Image | torch.Tensor], p: float) -> None:
        super().__init__()
        self._crops = BackgroundCrops(backgrounds)
        self._sampler = BackgroundSampler(self._crops.sizes, p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"draw": self._sampler(*v2.query_size(flat_inputs))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        draw = params["draw"]
        if draw is None:
            return inpt
        is_pil = isinstance(inpt, PIL.Image.Image)
        image = F.pil_to_tensor(inpt) if is_pil else inpt.as_subclass(torch.Tensor)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"BackgroundMixing expects a 3-channel C x H x W image, got shape {tuple(image.shape)}")
        image_float = F.to_dtype(image, torch.float32, scale=True)
        background = F.to_dtype(self._crops(draw, *image.shape[-2:]), torch.float32, scale=True)
        image_hwc = F.to_dtype(image, torch.uint8, scale=True).permute(1, 2, 0).contiguous().numpy()
        mask = torch.tensor(foreground_mask(image_hwc), dtype=torch.float32) / 255  # a copy: masks may be cached
        mixed = F.to_dtype(torch.lerp(background, image_float, mask), image.dtype, scale=True)
        if is_pil:
            return F.to_pil_image(mixed)
        return tv_tensors.wrap(mixed, like=inpt) if isinstance(inpt, tv_tensors.Image) else mixed


class BackgroundCrops:
    """``backgrounds`` as uint8 tensors (their sizes in ``sizes``); called with a :class:`BackgroundDraw`, the crop
    it names resized to height x width, mirrored when drawn so and colour-jittered
    (:data:`~.recipe.BACKGROUND_JITTER`), 3 x height x width uint8. Background mixing's backgrounds in the
    torchvision engine, and outlier exposure's images (``outliers.py``)."""

    def __init__(self, backgrounds: Sequence[PIL.Image.Image | torch.Tensor]) -> None:
        self.images = [_as_uint8_rgb(background) for background in backgrounds]
        self.sizes = [tuple(image.shape[-2:]) for image in self.images]
        self._jitter = v2.ColorJitter(*BACKGROUND_JITTER)

    def __call__(self, draw: BackgroundDraw, height: int, width: int) -> torch.Tensor:
        crop = F.resized_crop(self.images[draw.index], *draw.box, size=[height, width], antialias=True)
        return self._jitter(F.horizontal_flip(crop) if draw.flip else crop)


@dataclass(frozen=True)
class BackgroundDraw:
    """The background drawn for one image: background number ``index``, cropped to ``box`` (top, left, height,
    width), mirrored left-right when ``flip``."""

    index: int
    box: tuple[int, int, int, int]
    flip: bool


class BackgroundSampler:
    """The random half of background mixing, shared by both engines so that they draw alike: whether mixing fires
    (probability ``p``), which of the backgrounds (their (height, width) ``sizes``), its crop
    (:func:`sample_background_crop`) and whether it is mirrored (:data:`~.recipe.BACKGROUND_FLIP_PROB`); torch's
    RNG."""

    def __init__(self, sizes: Sequence[tuple[int, int]], p: float) -> None:
        if not sizes:
            raise ValueError("background mixing needs at least one background image")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"background mixing: p={p} must be in [0, 1]")
        self.sizes = [(int(height), int(width)) for height, width in sizes]
        self.p = p

    def __call__(self, height: int, width: int) -> BackgroundDraw | None:
        """The background for a height x width image, or None when mixing does not fire."""
        if torch.rand(()) >= self.p:
            return None
        index = int(torch.randint(len(self.sizes), ()))
        box = sample_background_crop(*self.sizes[index], height, width)
        return BackgroundDraw(index, box, bool(torch.rand(()) < BACKGROUND_FLIP_PROB))


def sample_background_crop(bg_height: int, bg_width: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Random crop (top, left, height, width) of a bg_height x bg_width background with the aspect ratio of a
    height x width image, its side :data:`~.recipe.BACKGROUND_ZOOM` of the largest such crop that fits; torch's RNG."""
    aspect = width / height
    fit_height, fit_width = (
        (bg_height, bg_height * aspect) if bg_width / bg_height >= aspect else (bg_width / aspect, bg_width)
    )
    zoom = float(torch.empty(()).uniform_(*BACKGROUND_ZOOM))
    crop_height = max(1, min(bg_height, round(fit_height * zoom)))
    crop_width = max(1, min(bg_width, round(fit_width * zoom)))
    top = int(torch.randint(bg_height - crop_height + 1, ()))
    left = int(torch.randint(bg_width - crop_width + 1, ()))
    return top, left, crop_height, crop_width


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Soft H x W uint8 mask (0..255, 255 = character) of the character in an RGB uint8 H x W x 3 image (see
    BackgroundMixing); may be a cached, read-only array.

    OpenCV on uint8 (``inRange``, ``floodFill``, ``dilate``, ``GaussianBlur``), so that the reference and the
    fused engine share this one implementation at well under a millisecond per image. The border band alone
    decides whether the backdrop is flat, so a scene costs no full-image work.
    """
    height, width = image.shape[:2]
    band = max(1, round(BORDER_BAND_FRACTION * min(height, width)))
    border = _border_band(image, band)
    backdrop_colour = np.partition(border, (len(border) - 1) // 2, axis=0)[(len(border) - 1) // 2].astype(int)
    tolerance = int(BACKDROP_TOLERANCE * 255)  # |x - c| <= 0.1 on [0, 1] is |x - c| <= 25 on integer levels
    low, high = backdrop_colour - tolerance, backdrop_colour + tolerance
    if cv2.countNonZero(cv2.inRange(border[:, None], low, high)) < FLAT_BORDER_MIN_FRACTION * len(border):
        return _soft_ellipse(height, width)
    # backdrop = the matching pixels connected to the edge: flood them from a matching frame around the image
    matches = cv2.copyMakeBorder(cv2.inRange(image, low, high), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=MATCH)
    cv2.floodFill(matches, None, (0, 0), BACKDROP)  # 4-connected
    foreground = cv2.compare(matches[1:-1, 1:-1], BACKDROP, cv2.CMP_NE)
    if cv2.countNonZero(foreground) < MIN_FOREGROUND_FRACTION * foreground.size:
        return _soft_ellipse(height, width)
    size = 2 * MASK_DILATION_PX + 1
    grown = cv2.dilate(foreground, np.ones((size, size), np.uint8))
    kernel = 2 * math.ceil(MASK_FEATHER_RADIUS_SIGMAS * MASK_FEATHER_SIGMA_PX) + 1
    return cv2.GaussianBlur(grown, (kernel, kernel), MASK_FEATHER_SIGMA_PX)


def _border_band(array: np.ndarray, band: int) -> np.ndarray:
    """The pixels (rows of ``array.shape[2:]``) within ``band`` of the image's edge, each once."""
    height, width = array.shape[:2]
    middle = array[band : max(band, height - band)]
    parts = (array[:band], array[max(band, height - band) :], middle[:, :band], middle[:, max(band, width - band) :])
    return np.concatenate([part.reshape(-1, *array.shape[2:]) for part in parts])


@functools.lru_cache(maxsize=16)
def _soft_ellipse(height: int, width: int) -> np.ndarray:
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    radius = np.sqrt(ys**2 + xs**2)
    t = np.clip((SOFT_MASK_OUTER_RADIUS - radius) / (SOFT_MASK_OUTER_RADIUS - SOFT_MASK_INNER_RADIUS), 0.0, 1.0)
    mask = np.round(255 * t * t * (3.0 - 2.0 * t)).astype(np.uint8)
    mask.setflags(write=False)  # cached: shared by every caller
    return mask


def _as_uint8_rgb(background: PIL.Image.Image | torch.Tensor) -> torch.Tensor:
    if isinstance(background, PIL.Image.Image):
        return F.pil_to_tensor(background.convert("RGB"))
    return F.to_dtype(background.as_subclass(torch.Tensor), torch.uint8, scale=True)


def load_backgrounds(background_dir: str | None, size_hint: int = 256) -> list[PIL.Image.Image]:
    """RGB background images, each shrunk so its shorter side is at most ``size_hint``.

    From ``background_dir`` (searched recursively; files PIL cannot read are skipped) when given, else the
    built-in set: the photographs bundled in scikit-image (:data:`BUILTIN_PHOTOS`) plus smooth colour gradients
    and blurred colour noise. Nothing is downloaded.
    """
    if background_dir is None:
        return _builtin_photos(size_hint) + _procedural_backgrounds(size_hint)
    return _folder_images(Path(background_dir), size_hint)


def background_pool(cfg: Config) -> list[PIL.Image.Image]:
    """The backgrounds ``cfg``'s mixing draws from: ``cfg.background_dir``'s images or the built-in set
    (:func:`load_backgrounds`), loaded (and a bad folder refused) whenever ``cfg.background_mix_prob`` is above 0;
    none otherwise."""
    return load_backgrounds(cfg.background_dir) if cfg.background_mix_prob > 0 else []


def _folder_images(folder: Path, size_hint: int) -> list[PIL.Image.Image]:
    if not folder.is_dir():
        raise ValueError(f"background_dir {str(folder)!r} is not a folder")
    images, unreadable = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            with PIL.Image.open(path) as image:
                images.append(_shrink(image.convert("RGB"), size_hint))
        except (OSError, ValueError, PIL.Image.DecompressionBombError):
            unreadable.append(path)
    if unreadable:
        log.warning("background_dir %s: skipped %d unreadable file(s), e.g. %s", folder, len(unreadable), unreadable[0])
    if not images:
        raise ValueError(f"background_dir {str(folder)!r} contains no readable image")
    return images


def _builtin_photos(size_hint: int) -> list[PIL.Image.Image]:
    data = resources.files("skimage.data")
    images = []
    for name in BUILTIN_PHOTOS:
        if not (data / name).is_file():
            log.warning("built-in background %s is not in this scikit-image; skipped", name)
            continue
        with resources.as_file(data / name) as path, PIL.Image.open(path) as image:
            images.append(_shrink(image.convert("RGB"), size_hint))
    return images


def _procedural_backgrounds(size: int) -> list[PIL.Image.Image]:
    generator = torch.Generator().manual_seed(BUILTIN_PROCEDURAL_SEED)
    height, width = size, round(size * PROCEDURAL_ASPECT)
    ys = torch.linspace(0.0, 1.0, height)[:, None]
    xs = torch.linspace(0.0, 1.0, width)[None, :]
    images = []
    for _ in range(PROCEDURAL_GRADIENTS):
        start, end = torch.rand(2, 3, 1, 1, generator=generator)
        angle = float(torch.rand((), generator=generator)) * 2 * math.pi
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        images.append(torch.lerp(start, end, ramp))
    sigma = NOISE_BLUR_SIGMA_PX
    kernel = 2 * math.ceil(3 * sigma) + 1
    for _ in range(PROCEDURAL_NOISE_FIELDS):
        coarse = torch.rand(3, height // NOISE_CELL_PX + 1, width // NOISE_CELL_PX + 1, generator=generator)
        smooth = F.resize(coarse, [height, width], interpolation=v2.InterpolationMode.BICUBIC, antialias=False)
        images.append(F.gaussian_blur(smooth.clamp(0.0, 1.0), [kernel, kernel], [sigma, sigma]))
    return [F.to_pil_image(F.to_dtype(image, torch.uint8, scale=True)) for image in images]


def _shrink(image: PIL.Image.Image, size_hint: int) -> PIL.Image.Image:
    scale = size_hint / min(image.size)
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), PIL.Image.BILINEAR)

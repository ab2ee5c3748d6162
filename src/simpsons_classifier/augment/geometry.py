"""Fused geometry: RandomResizedCrop, flip, rotation, perspective and elastic displacement, resampled once.

Each transform is a 3 x 3 homography in pixel coordinates (elastic: a smooth displacement of the output pixels),
drawn with the reference's ranges. Composed, they send every output pixel to one point of the source crop, so
the image is interpolated once (``cv2.warpPerspective``, or ``cv2.remap`` when elastic fires) instead of once
per transform: cheaper, and sharper, since interpolation blur does not pile up. Coordinates are OpenCV's:
integers at pixel centres. A homography here maps *output* pixels to *input* pixels (the direction in which
images are sampled), so the product ``crop @ flip @ rotation @ perspective`` applies the crop first.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from simpsons_classifier.augment.recipe import CROP_RATIO

BOX_ATTEMPTS = 10
"""Random boxes tried before falling back (torchvision's RandomResizedCrop and RandomErasing try 10)."""
EDGE_PAD = 1
"""Replicated border around the crop: bilinear samples on the crop's edge see its edge colour, samples beyond
it (the corners that rotation and perspective expose) see black, as torchvision fills them."""
ELASTIC_NODE_SPACING = 3.0
"""Elastic displacement is drawn on nodes this many sigmas apart and upsampled bicubically: about the smoothness
of torchvision's per-pixel noise blurred with sigma, from (3 sigma)^2 times fewer random numbers and no blur."""


@dataclass(frozen=True)
class Warp:
    """One sample's geometry: which box of the source is cropped, and how output pixels map into it."""

    box: tuple[int, int, int, int]
    """Top, left, height, width of the crop in the source image."""
    inner: np.ndarray
    """3 x 3 homography from output pixels to pixels of the crop resized to size x size (flip, rotation,
    perspective)."""
    displacement: np.ndarray | None
    """Elastic offsets in output pixels on a coarse grid of nodes (n x n x 2, x then y), added to the output
    pixels before ``inner``; None when elastic did not fire."""


@dataclass(frozen=True)
class Geometry:
    """Draws one sample's :class:`Warp`: a RandomResizedCrop box, then (each with its probability) a horizontal
    flip, a rotation, a perspective distortion and an elastic displacement. Zero strength (scale (1, 1), the
    image's own aspect ratio, no degrees/distortion/alpha) is the identity on a size x size image."""

    size: int
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float] = CROP_RATIO
    flip_prob: float = 0.0
    degrees: float = 0.0
    """Rotation drawn uniformly in [-degrees, degrees] (no probability: 0 turns it off)."""
    distortion: float = 0.0
    """How far each corner may move inwards under the perspective distortion, as torchvision's
    RandomPerspective's ``distortion_scale``."""
    perspective_prob: float = 0.0
    elastic_alpha: float = 0.0
    """Strength of the elastic displacement, as torchvision's ElasticTransform's ``alpha``; ``elastic_sigma`` is
    its smoothness, in pixels."""
    elastic_sigma: float = 1.0
    elastic_prob: float = 0.0

    def sample(self, height: int, width: int) -> Warp:
        box = sample_box(height, width, self.crop_scale, self.crop_ratio) or central_box(height, width, self.crop_ratio)
        flip, angle, perspective, elastic = torch.rand(4).tolist()
        inner = np.eye(3)
        if flip < self.flip_prob:
            inner = inner @ flip_homography(self.size)
        if self.degrees > 0:
            inner = inner @ rotation_homography(self.degrees * (2 * angle - 1), self.size)
        if perspective < self.perspective_prob:
            inner = inner @ perspective_homography(*self._perspective_points())
        displacement = None
        if elastic < self.elastic_prob and self.elastic_alpha > 0:
            nodes = elastic_nodes(self.size, self.elastic_sigma)
            scale = elastic_pixel_std(self.elastic_alpha, self.elastic_sigma) / _cubic_gain(nodes, self.size)
            displacement = (torch.randn(nodes, nodes, 2) * scale).numpy()
        return Warp(box, inner, displacement)

    def _perspective_points(self) -> tuple[np.ndarray, np.ndarray]:
        """torchvision's RandomPerspective: each corner moves inwards by up to distortion * half the side."""
        last = self.size - 1
        start = np.array([[0, 0], [last, 0], [last, last], [0, last]], np.float64)
        inwards = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
        shift = torch.rand(4, 2).numpy() * (self.distortion * (self.size // 2))
        return start, start + inwards * shift


def sample_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int] | None:
    """torchvision's random box (RandomResizedCrop, RandomErasing): area ``scale`` of the image, aspect ratio
    (width / height) log-uniform in ``ratio``, anywhere inside; None when BOX_ATTEMPTS draws do not fit.
    Plain Python floats from one ``torch.rand``: numpy's per-call overhead would cost more than the maths."""
    *attempts, top_draw, left_draw = torch.rand(2 * BOX_ATTEMPTS + 2, dtype=torch.float64).tolist()
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for area_draw, aspect_draw in zip(attempts[::2], attempts[1::2]):
        area = height * width * (scale[0] + (scale[1] - scale[0]) * area_draw)
        aspect = math.exp(log_low + (log_high - log_low) * aspect_draw)
        box_width, box_height = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < box_width <= width and 0 < box_height <= height:
            top, left = int(top_draw * (height - box_height + 1)), int(left_draw * (width - box_width + 1))
            return top, left, box_height, box_width
    return None


def central_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """RandomResizedCrop's fallback: the largest centred box whose aspect ratio is within ``ratio``."""
    box_height, box_width = height, width
    if width / height < ratio[0]:
        box_height = round(width / ratio[0])
    elif width / height > ratio[1]:
        box_width = round(height * ratio[1])
    return (height - box_height) // 2, (width - box_width) // 2, box_height, box_width


def flip_homography(size: int) -> np.ndarray:
    """Mirror left-right."""
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_homography(degrees: float, size: int) -> np.ndarray:
    """Rotate the content counter-clockwise by ``degrees`` about the image centre (torchvision's RandomRotation)."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    centre = (size - 1) / 2
    return np.array(
        [
            [cos, -sin, centre - cos * centre + sin * centre],
            [sin, cos, centre - sin * centre - cos * centre],
            [0.0, 0.0, 1.0],
        ]
    )


def perspective_homography(startpoints: np.ndarray, endpoints: np.ndarray) -> np.ndarray:
    """Move the corners at ``startpoints`` to ``endpoints`` (4 x 2, x then y), as torchvision's perspective does:
    it reads the points as continuous coordinates, whose pixel centres are at +0.5."""
    return cv2.getPerspectiveTransform((endpoints - 0.5).astype(np.float32), (startpoints - 0.5).astype(np.float32))


def elastic_nodes(size: int, sigma: float) -> int:
    """Nodes per side of the coarse elastic grid for a size x size output."""
    return math.ceil(size / (ELASTIC_NODE_SPACING * sigma)) + 1


def elastic_pixel_std(alpha: float, sigma: float) -> float:
    """Std, in pixels, of torchvision ElasticTransform's displacement: uniform noise in [-1, 1] (std 1/sqrt(3))
    blurred with a Gaussian of ``sigma`` (which divides a 2-D white noise's std by 2 sigma sqrt(pi)) and scaled
    by alpha / size in coordinates that span 2 / size per pixel, i.e. by alpha / 2 pixels."""
    return alpha / 2 / math.sqrt(3) / (2 * sigma * math.sqrt(math.pi))


@functools.cache
def _cubic_gain(nodes: int, size: int) -> float:
    """Std of the bicubic upsampling (nodes -> size per side) of unit-variance white noise, over all pixels:
    exact, from the interpolation weights (rows of an upsampled identity)."""
    weights = cv2.resize(np.eye(nodes, dtype=np.float64), (nodes, size), interpolation=cv2.INTER_CUBIC)
    return float((weights**2).sum(axis=1).mean())  # 2-D variance is the square of the 1-D one


@functools.cache
def pixel_grid(size: int) -> np.ndarray:
    """size x size x 2 float32 pixel coordinates (x, y), read-only."""
    ys, xs = np.mgrid[:size, :size].astype(np.float32)
    grid = np.dstack([xs, ys])
    grid.setflags(write=False)
    return grid


def upsample_displacement(displacement: np.ndarray, size: int) -> np.ndarray:
    """The coarse elastic grid, bicubically upsampled to size x size x 2 pixel offsets."""
    return cv2.resize(displacement.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)


def resize_homography(sx: float, sy: float) -> np.ndarray:
    """Pixel of an image -> pixel of that image resized by (sx, sy), half-pixel aligned as every resize in
    torchvision and OpenCV."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def crop_to_source(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Pixel of the crop resized to size x size -> pixel of the source."""
    top, left, height, width = box
    return translation(left, top) @ resize_homography(width / size, height / size)


def output_to_source(warp: Warp, size: int) -> np.ndarray:
    """Output pixel (before elastic displacement) -> pixel of the source image."""
    return crop_to_source(warp.box, size) @ warp.inner


def shrink_factor(box: tuple[int, int, int, int], size: int) -> int:
    """The integer factor a box is averaged down by before a bilinear resampling to size x size, so that the
    resampling never shrinks by 2x or more (1: not averaged down)."""
    return max(1, min(box[2:]) // size)


def cut_out(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``box`` of an image (any number of channels) ready to be resampled to size x size, and the homography
    from source pixels to its pixels.

    The box is cut out with a replicated :data:`EDGE_PAD` border, so a warp sees the box's edge colour on its
    edge and black beyond. A box more than twice the output is first averaged down by an integer factor
    (``INTER_AREA``), so that the bilinear warp never shrinks by 2x or more and cannot alias.
    """
    top, left, height, width = box
    shrink = shrink_factor(box, size)
    pad = shrink * EDGE_PAD
    cut = cv2.copyMakeBorder(
        image[top : top + height, left : left + width],
        pad,
        pad + (-height) % shrink,  # and up to a multiple of shrink
        pad,
        pad + (-width) % shrink,
        cv2.BORDER_REPLICATE,
    )
    if shrink > 1:
        cut = cv2.resize(cut, (cut.shape[1] // shrink, cut.shape[0] // shrink), interpolation=cv2.INTER_AREA)
    return cut, resize_homography(1 / shrink, 1 / shrink) @ translation(pad - left, pad - top)


def resample(source: np.ndarray, homography: np.ndarray, displacement: np.ndarray | None, size: int) -> np.ndarray:
    """size x size bilinear samples of ``source`` at ``homography`` (output pixel -> source pixel) of the output
    pixels moved by the elastic ``displacement`` (coarse, see :class:`Warp`; None: not moved); black outside.
    Give it 4 channels: OpenCV's warps are vectorised for them (about twice as fast as on 3)."""
    if displacement is None:
        return cv2.warpPerspective(source, homography, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    points = pixel_grid(size) + upsample_displacement(displacement, size)
    mapped = cv2.perspectiveTransform(points.reshape(-1, 1, 2), homography).reshape(size, size, 2)
    return cv2.remap(source, mapped, None, cv2.INTER_LINEAR)


def warp_image(image: np.ndarray, warp: Warp, size: int, alpha: np.ndarray | None = None) -> np.ndarray:
    """Resample an RGB uint8 H x W x 3 image through ``warp`` into size x size x 3, with one interpolation; black
    where the warp leaves the crop. With ``alpha`` (H x W uint8), the result is RGBA and its 4th channel is
    ``alpha`` warped the same way (0 outside the crop): a mask follows the image for free, since the warp runs
    on 4 channels anyway."""
    if alpha is None and _crops_and_flips_only(warp, size):
        return _resize_crop(image, warp, size)
    cut, source_to_cut = cut_out(image, warp.box, size)
    rgba = cv2.cvtColor(cut, cv2.COLOR_RGB2RGBA)
    if alpha is not None:
        cv2.insertChannel(cut_out(alpha, warp.box, size)[0], rgba, 3)
    out = resample(rgba, source_to_cut @ output_to_source(warp, size), warp.displacement, size)
    return out if alpha is not None else cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)


def _crops_and_flips_only(warp: Warp, size: int) -> bool:
    """Whether ``warp`` only crops (to a box that is not averaged down first) and maybe flips."""
    return shrink_factor(warp.box, size) == 1 and warp.displacement is None and any(
        np.array_equal(warp.inner, h) for h in (np.eye(3), flip_homography(size))
    )


def _resize_crop(image: np.ndarray, warp: Warp, size: int) -> np.ndarray:
    """:func:`warp_image` for a warp that :func:`_crops_and_flips_only` (most of the weak pipeline's): the same
    bilinear, half-pixel aligned samples with edges replicated, from ``cv2.resize`` (several times faster than
    a general warp) and ``cv2.flip``."""
    top, left, height, width = warp.box
    out = cv2.resize(image[top : top + height, left : left + width], (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.flip(out, 1) if warp.inner[0, 0] < 0 else out

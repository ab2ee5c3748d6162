"""Synthetic detection scenes: characters cut out of a classification dataset pasted onto backgrounds.

A folder-per-character dataset has no boxes, but its images can be composed into scenes whose boxes are known
exactly (the copy-paste recipe of Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for
Instance Segmentation", 2021). :class:`SceneComposer` makes one scene per index, reproducibly;
:class:`SceneDataset` serves them in torchvision's detection format.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import torch
from torch.utils.data import Dataset

from simpsons_classifier.augment.background import MASK_DILATION_PX, foreground_mask, sample_background_crop
from simpsons_classifier.augment.colour import Colour
from simpsons_classifier.augment.recipe import BACKGROUND_FLIP_PROB, BACKGROUND_JITTER
from simpsons_classifier.data.images import UnreadableImage, load_rgb

log = logging.getLogger(__name__)

BOX_ALPHA_THRESHOLD = 0.5
"""A pixel belongs to a character's box when its visible opacity, in the mask shrunk back by the margin
:func:`foreground_mask` grows it by, is above this: the character's outline for an exact cut-out, the central
ellipse of radius 0.75 for a full-scene image's soft mask."""
CUTOUT_CACHE_SIZE = 512
"""Cut-outs kept in memory per process (each at most ``size`` pixels high: about 100-300 kB)."""
MAX_UNREADABLE_DRAWS = 100
"""A scene gives up (ValueError) after this many unreadable samples in a row: the dataset is broken, not one file."""

Target = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Scene:
    """One composed scene."""

    image: np.ndarray
    """size x size x 3 uint8 RGB."""
    boxes: np.ndarray
    """N x 4 float32 (x1, y1, x2, y2) in pixels, pixel edges (a box covering columns 3..5 has x1 = 3, x2 = 6): the
    visible extent of each pasted character, clipped to the scene."""
    labels: np.ndarray
    """N int64 class indices, as given with the samples."""


@dataclass(frozen=True)
class SceneRecipe:
    """How scenes are composed."""

    size: int = 320
    """Scenes are size x size pixels."""
    max_characters: int = 4
    """Each scene holds 1..max_characters pasted characters, uniform (some may then be dropped as hidden)."""
    scale: tuple[float, float] = (0.25, 0.7)
    """Height of a pasted character (its cut-out) as a fraction of the scene's side, uniform; a cut-out wider than
    the scene at that height is shrunk to the scene's width."""
    flip_prob: float = 0.5
    """Probability of mirroring a character left-right."""
    colour_jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.0)
    """ColorJitter (brightness, contrast, saturation, hue) of each character. Mild, and no hue shift by default:
    the colours of a character (yellow skin, blue hair) are part of who they are."""
    max_outside: float = 0.25
    """Up to this fraction of a character's width and of its height may lie outside the scene, as characters cut
    by the frame's edge in real frames."""
    min_visible: float = 0.3
    """A character whose visible area (after later characters covered it and the scene's edge cut it) is below
    this fraction of its pasted area is dropped from the boxes and labels: too little of it is left to recognise."""

    def __post_init__(self) -> None:
        low, high = self.scale
        problems = [
            (self.size < 16, f"size={self.size} must be at least 16"),
            (self.max_characters < 1, f"max_characters={self.max_characters} must be at least 1"),
            (not 0 < low <= high <= 1, f"scale={self.scale} must satisfy 0 < low <= high <= 1"),
            (not 0 <= self.flip_prob <= 1, f"flip_prob={self.flip_prob} must be in [0, 1]"),
            (not 0 <= self.max_outside < 1, f"max_outside={self.max_outside} must be in [0, 1)"),
            (not 0 <= self.min_visible <= 1, f"min_visible={self.min_visible} must be in [0, 1]"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(f"SceneRecipe: {message}")


@dataclass(frozen=True)
class Cutout:
    """A character cropped to its mask's bounding box."""

    rgb: np.ndarray
    """H x W x 3 uint8."""
    masks: np.ndarray
    """H x W x 2 uint8: the opacity it is pasted with (:func:`foreground_mask`) and the character's core (that mask
    eroded by :data:`MASK_DILATION_PX`, undoing the margin the mask keeps around an exact cut-out's outline), from
    which its box is measured."""


@dataclass(frozen=True)
class Placement:
    """Where one character goes: sample number ``sample``'s cut-out, resized to width x height pixels, its top-left
    corner at scene pixel (left, top) (negative or past the scene's side where it sticks out), mirrored if
    ``flip``."""

    sample: int
    top: int
    left: int
    width: int
    height: int
    flip: bool


@dataclass
class _Pasted:
    """A character on the scene, its arrays covering scene rows ``top:top+h`` and columns ``left:left+w``:
    ``alpha`` and ``core`` as pasted (Cutout), ``cover`` the fraction of each pixel not hidden by later characters
    (float32 each); ``area`` is its whole cut-out's opacity, inside the scene or not."""

    label: int
    top: int
    left: int
    alpha: np.ndarray
    core: np.ndarray
    cover: np.ndarray
    area: float


class SceneComposer:
    """Composes scene ``index`` from 1..max_characters cut-outs of ``samples`` (image path, class index) pasted on a
    random crop of one of ``backgrounds``.

    * **Cut-outs**: :func:`~simpsons_classifier.augment.background.foreground_mask` of each image, which is exact
      for sprites and studio shots on a flat backdrop and a soft centred ellipse for full scenes; the image is
      cropped to the mask's bounding box. The box of a full-scene image is therefore where the ellipse is above
      :data:`BOX_ALPHA_THRESHOLD` (its central 75 % in each direction), a rough box, as rough as the cut-out.
    * **Each character**: scaled to a height drawn from ``recipe.scale``, maybe mirrored, colour-jittered, placed
      uniformly with up to ``recipe.max_outside`` of it outside the scene, pasted over what is there
      (``out = alpha * character + (1 - alpha) * scene``).
    * **Boxes** come from what stays visible of each character's core (its mask less the margin an exact cut-out
      keeps around the outline) after every paste (each later character hides the earlier ones in proportion to
      its opacity), clipped to the scene; a character left with less than ``recipe.min_visible`` of
      its area is dropped from the boxes and labels, though its pixels stay in the image.
    * **Background**: a random crop (:func:`~simpsons_classifier.augment.background.sample_background_crop`) of
      a random background, resized to the scene, maybe mirrored and colour-jittered as background mixing does.

    Every draw comes from ``np.random.default_rng([seed, index])`` (torch's CPU RNG, which the reused augment
    helpers draw from, is seeded from it and restored after), so a scene depends on (seed, index) only, not on the
    process, the worker or the order of calls. An unreadable image is skipped (and logged once) and another
    sample drawn in its place.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | Path, int]],
        backgrounds: Sequence[PIL.Image.Image],
        recipe: SceneRecipe = SceneRecipe(),
        seed: int = 0,
    ) -> None:
        if not samples:
            raise ValueError("SceneComposer needs at least one sample image")
        if not backgrounds:
            raise ValueError("SceneComposer needs at least one background image")
        self.samples = [(Path(path), int(label)) for path, label in samples]
        self.recipe = recipe
        self.seed = seed
        self._backgrounds = [np.asarray(background.convert("RGB")) for background in backgrounds]
        self._character_jitter = Colour(recipe.colour_jitter)
        self._background_jitter = Colour(BACKGROUND_JITTER)
        self._unreadable: set[Path] = set()

    def scene(self, index: int) -> Scene:
        """Scene ``index``: its draws come from (seed, index) alone."""
        rng = np.random.default_rng([self.seed, index])
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(rng.integers(2**63)))
            background = self._background(rng)
            count = int(rng.integers(1, self.recipe.max_characters + 1))
            return self.compose(background, [self._placement(rng) for _ in range(count)])

    def compose(self, background: np.ndarray, placements: Sequence[Placement]) -> Scene:
        """Paste ``placements``, in order, onto ``background`` (size x size x 3 uint8); each character is
        colour-jittered with torch's RNG. :meth:`scene` draws both; a caller that chooses them (a test) calls this."""
        size = self.recipe.size
        if background.shape != (size, size, 3):
            raise ValueError(f"compose: background of shape {background.shape}, expected ({size}, {size}, 3)")
        canvas = background.astype(np.float32)
        pasted: list[_Pasted] = []
        for placement in placements:
            self._paste(canvas, pasted, placement)
        boxes, labels = [], []
        for character in pasted:
            box = self._visible_box(character)
            if box is not None:
                boxes.append(box)
                labels.append(character.label)
        return Scene(
            image=np.round(canvas).astype(np.uint8),
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
        )

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        pixels = self._backgrounds[int(rng.integers(len(self._backgrounds)))]
        size = self.recipe.size
        top, left, height, width = sample_background_crop(*pixels.shape[:2], size, size)
        crop = cv2.resize(pixels[top : top + height, left : left + width], (size, size),
                          interpolation=_interpolation(height, size))
        if rng.random() < BACKGROUND_FLIP_PROB:
            crop = cv2.flip(crop, 1)
        return self._background_jitter(crop)

    def _placement(self, rng: np.random.Generator) -> Placement:
        sample = self._draw_readable_sample(rng)
        recipe, size = self.recipe, self.recipe.size
        source_height, source_width = self._cutout(sample).rgb.shape[:2]
        height = rng.uniform(*recipe.scale) * size
        width = min(size, height * source_width / source_height)
        height = width * source_height / source_width
        width, height = max(1, round(width)), max(1, round(height))
        top, left = (_position(rng, extent, size, recipe.max_outside) for extent in (height, width))
        return Placement(sample, top, left, width, height, bool(rng.random() < recipe.flip_prob))

    def _paste(self, canvas: np.ndarray, pasted: list[_Pasted], placement: Placement) -> None:
        """Paste a character onto ``canvas`` (float32), hiding the ``pasted`` ones under it; append it."""
        cutout = self._cutout(placement.sample)
        width, height, top, left = placement.width, placement.height, placement.top, placement.left
        interpolation = _interpolation(cutout.rgb.shape[0], height)
        rgb, masks = (cv2.resize(image, (width, height), interpolation=interpolation).reshape(height, width, -1)
                      for image in (cutout.rgb, cutout.masks))  # reshape: cv2 drops the channels of a 1 x 1 result
        if placement.flip:
            rgb, masks = cv2.flip(rgb, 1), cv2.flip(masks, 1).reshape(height, width, -1)
        rgb = self._character_jitter(rgb).astype(np.float32)
        alpha, core = np.moveaxis(masks.astype(np.float32) / 255, -1, 0)
        size = self.recipe.size
        y0, y1, x0, x1 = max(top, 0), min(top + height, size), max(left, 0), min(left + width, size)
        inside = (slice(y0 - top, max(y0, y1) - top), slice(x0 - left, max(x0, x1) - left))  # of the character
        region = canvas[y0 : max(y0, y1), x0 : max(x0, x1)]
        region += (rgb[inside] - region) * alpha[inside][..., None]
        for earlier in pasted:
            _hide(earlier, alpha[inside], y0, x0)
        label = self.samples[placement.sample][1]
        cover = np.ones_like(alpha[inside])
        pasted.append(_Pasted(label, y0, x0, alpha[inside], core[inside], cover, float(alpha.sum())))

    def _cutout(self, sample: int) -> Cutout:
        return load_cutout(self.samples[sample][0], self.recipe.size)

    def _draw_readable_sample(self, rng: np.random.Generator) -> int:
        """A random sample whose cut-out loads; an unreadable image is skipped for another draw (the same draws
        whatever has been read before, so scenes stay reproducible)."""
        for _ in range(MAX_UNREADABLE_DRAWS):
            sample = int(rng.integers(len(self.samples)))
            path = self.samples[sample][0]
            if path in self._unreadable:
                continue
            try:
                self._cutout(sample)
                return sample
            except (UnreadableImage, OSError) as error:
                self._unreadable.add(path)
                log.warning("scenes: skipped unreadable image %s (%s)", path, error)
        raise ValueError(f"scenes: {MAX_UNREADABLE_DRAWS} sample images in a row were unreadable, e.g. {path}")

    def _visible_box(self, character: _Pasted) -> list[float] | None:
        """The box of what is visible of ``character``, or None when too little of it is (recipe.min_visible)."""
        visible_area = float((character.alpha * character.cover).sum())
        if character.area <= 0 or visible_area < self.recipe.min_visible * character.area:
            return None
        opaque = character.core * character.cover > BOX_ALPHA_THRESHOLD
        rows, columns = np.flatnonzero(opaque.any(axis=1)), np.flatnonzero(opaque.any(axis=0))
        if not len(rows):
            return None
        top, left = character.top, character.left
        return [left + columns[0], top + rows[0], left + columns[-1] + 1, top + rows[-1] + 1]


def _interpolation(source_height: int, height: int) -> int:
    """OpenCV's area averaging to shrink (no aliasing), bilinear to enlarge (area would be nearest-neighbour)."""
    return cv2.INTER_AREA if height < source_height else cv2.INTER_LINEAR


def _position(rng: np.random.Generator, extent: int, size: int, max_outside: float) -> int:
    """Where a character ``extent`` pixels long starts along a side of ``size``: anywhere that leaves at most
    ``max_outside`` of it past either edge."""
    return int(rng.integers(-round(max_outside * extent), size - round((1 - max_outside) * extent) + 1))


def _hide(character: _Pasted, cover: np.ndarray, top: int, left: int) -> None:
    """Hide ``character`` under ``cover``, an opacity at scene rows/columns from top/left."""
    height, width = character.cover.shape
    y0, x0 = max(top, character.top), max(left, character.left)
    y1 = min(top + cover.shape[0], character.top + height)
    x1 = min(left + cover.shape[1], character.left + width)
    if y0 < y1 and x0 < x1:
        covered = cover[y0 - top : y1 - top, x0 - left : x1 - left]
        character.cover[y0 - character.top : y1 - character.top, x0 - character.left : x1 - character.left] *= (
            1 - covered
        )


@functools.lru_cache(maxsize=CUTOUT_CACHE_SIZE)
def load_cutout(path: Path, max_height: int) -> Cutout:
    """The cut-out of the character in image ``path``, read at most ``max_height`` pixels high (scenes never paste
    a character taller than their side, so more pixels would only cost time); cached per process."""
    image = np.asarray(load_rgb(path, draft_size=(max_height, max_height)))
    if image.shape[0] > max_height:
        width = max(1, round(image.shape[1] * max_height / image.shape[0]))
        image = cv2.resize(image, (width, max_height), interpolation=cv2.INTER_AREA)
    mask = foreground_mask(image)
    core = cv2.erode(mask, np.ones((2 * MASK_DILATION_PX + 1,) * 2, np.uint8))
    left, top, width, height = cv2.boundingRect(mask)
    crop = (slice(top, top + height), slice(left, left + width))
    cutout = Cutout(np.ascontiguousarray(image[crop]), np.ascontiguousarray(np.dstack([mask, core])[crop]))
    for array in (cutout.rgb, cutout.masks):
        array.setflags(write=False)  # cached: shared by every scene
    return cutout


class SceneDataset(Dataset[tuple[torch.Tensor, Target]]):
    """``length`` scenes of ``composer`` in torchvision's detection format: a 3 x H x W uint8 image tensor and
    ``{"boxes": N x 4 float32 (x1, y1, x2, y2), "labels": N int64}``. Item ``i`` is ``composer.scene(i)``."""

    def __init__(self, composer: SceneComposer, length: int) -> None:
        if length < 1:
            raise ValueError(f"SceneDataset: length={length} must be at least 1")
        self.composer = composer
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        if not 0 <= index < self.length:
            raise IndexError(f"scene {index} is out of range for {self.length} scenes")
        scene = self.composer.scene(index)
        return detection_item(scene.image, scene.boxes, scene.labels)


def detection_item(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, Target]:
    """An H x W x 3 uint8 image with its boxes and labels as torchvision detection models take them."""
    return (
        torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(),
        {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
        },
    )


def collate_scenes(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], list[Target]]:
    """A batch as torchvision detection models take it: a list of images and a list of targets (images may differ
    in size, so nothing is stacked)."""
    return [image for image, _ in batch], [target for _, target in batch]


def split_backgrounds(
    backgrounds: Sequence[PIL.Image.Image], held_out_fraction: float, seed: int
) -> tuple[list[PIL.Image.Image], list[PIL.Image.Image]]:
    """(training, held-out) backgrounds: a seeded random partition, ``held_out_fraction`` of them held out (at
    least one, and at least one left for training).

    Held-out scenes must be composed on backgrounds the detector never trained on: otherwise a detector that
    memorised the backgrounds (anything that is not background is a character) would score as if it could find
    characters anywhere.
    """
    if len(backgrounds) < 2:
        raise ValueError(f"holding out backgrounds needs at least 2 of them, got {len(backgrounds)}")
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction={held_out_fraction} must be between 0 and 1")
    order = np.random.default_rng(seed).permutation(len(backgrounds))
    held_out = min(len(backgrounds) - 1, max(1, round(held_out_fraction * len(backgrounds))))
    return [backgrounds[i] for i in sorted(order[held_out:])], [backgrounds[i] for i in sorted(order[:held_out])]

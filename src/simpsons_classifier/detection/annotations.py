"""Real boxes: reading Kaggle Simpsons ``annotation.txt`` and COCO JSON files, every bad box listed with why.

Two formats, told apart by content (whatever the file is called):

* **Kaggle** ``annotation.txt``: one box per line, ``path,x1,y1,x2,y2,class``, corners in pixels, e.g.
  ``./characters/homer_simpson/pic_0001.jpg,57,72,195,240,homer_simpson``.
* **COCO** JSON: an object with ``images`` (``id``, ``file_name``), ``annotations`` (``id``, ``image_id``,
  ``category_id``, ``bbox`` = [x, y, width, height] in pixels) and ``categories`` (``id``, ``name``).

Image paths are resolved against ``data_root``, the folder of class folders (see :func:`resolve_image`). A box is
kept only when its image exists and its header reads (the size comes from the header; nothing is decoded) and the
box is a non-empty rectangle inside the image; anything else becomes a :class:`Rejected` naming the line or
annotation and the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import PIL.Image
import torch
from torch.utils.data import Dataset

from simpsons_classifier.data.images import UnreadableImage, load_rgb
from simpsons_classifier.detection.scenes import SceneRecipe, Target, detection_item

KAGGLE_FIELDS = 6
"""path, x1, y1, x2, y2, class."""
COCO_KEYS = ("images", "annotations", "categories")


@dataclass(frozen=True)
class BoxAnnotation:
    """One real box: ``box`` = (x1, y1, x2, y2) in pixels of the image at ``path``."""

    path: Path
    box: tuple[float, float, float, float]
    label: str
    where: str = ""
    """The line or annotation it comes from ("annotation.txt:17"), for messages."""


@dataclass(frozen=True)
class Rejected:
    """A box (or line) that was not kept: ``where`` it is ("annotation.txt:17", "instances.json: annotation id
    42") and the ``reason``."""

    where: str
    reason: str


@dataclass
class Annotations:
    """The boxes kept from an annotation file, and those rejected."""

    boxes: list[BoxAnnotation] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def by_image(self) -> dict[Path, list[BoxAnnotation]]:
        """The boxes grouped by image, images in the order they first appear."""
        grouped: dict[Path, list[BoxAnnotation]] = {}
        for box in self.boxes:
            grouped.setdefault(box.path, []).append(box)
        return grouped


class _BoxChecker:
    """Resolves image paths and checks boxes against image sizes, reading each image's header once."""

    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root
        self._sizes: dict[str, tuple[Path, tuple[int, int]] | str] = {}

    def check(self, annotations: Annotations, where: str, written_path: str,
              box: tuple[float, float, float, float], label: str) -> None:
        """Append the box to ``annotations``, or a Rejected saying why it is not kept."""
        problem = self._problem(written_path, box)
        if isinstance(problem, str):
            annotations.rejected.append(Rejected(where, problem))
        else:
            annotations.boxes.append(BoxAnnotation(problem, box, label, where))

    def _problem(self, written_path: str, box: tuple[float, float, float, float]) -> str | Path:
        """Why the box cannot be kept, or (all is well) its image's resolved path."""
        x1, y1, x2, y2 = box
        if not all(math.isfinite(value) for value in box):
            return f"coordinates {box} are not all finite numbers"
        if x2 <= x1:
            return f"x2 {x2:g} <= x1 {x1:g} (degenerate box)"
        if y2 <= y1:
            return f"y2 {y2:g} <= y1 {y1:g} (degenerate box)"
        image = self._image(written_path)
        if isinstance(image, str):
            return image
        path, (width, height) = image
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            return f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is outside the {width}x{height} image {path}"
        return path

    def _image(self, written_path: str) -> tuple[Path, tuple[int, int]] | str:
        """The resolved path and (width, height) of an image, or why it cannot be used."""
        if written_path not in self._sizes:
            path = resolve_image(written_path, self.data_root)
            if path is None:
                self._sizes[written_path] = f"file not found: {written_path} (looked under {self.data_root})"
            else:
                try:
                    with PIL.Image.open(path) as image:  # reads the header only
                        self._sizes[written_path] = (path, image.size)
                except (OSError, ValueError) as error:
                    self._sizes[written_path] = f"cannot read image {path}: {error}"
        return self._sizes[written_path]


def resolve_image(written_path: str, data_root: Path) -> Path | None:
    """The image an annotation file names, or None when there is none.

    Kaggle's paths start from the download's top (``./characters/<class>/<file>``) while ``data_root`` is the
    folder of class folders, so the last two parts (``<class>/<file>``) are looked up under ``data_root`` first,
    then the path as written, relative to ``data_root`` (or as is, when absolute).
    """
    written = PurePosixPath(written_path.replace("\\", "/"))
    candidates = [data_root.joinpath(*written.parts[-2:]), data_root / written]
    return next((path for path in candidates if path.is_file()), None)


def read_boxes(path: str | Path, data_root: str | Path) -> Annotations:
    """The boxes of a Kaggle ``annotation.txt`` or a COCO JSON file (told apart by content), their images looked
    up under ``data_root``. FileNotFoundError when the file is missing, ValueError naming it when it is neither
    format; bad boxes are returned as :attr:`Annotations.rejected`, never raised."""
    path, data_root = Path(path), Path(data_root)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"annotation file {path} is not text: {_FORMATS}") from None
    checker = _BoxChecker(data_root)
    if text.lstrip().startswith("{"):
        return _read_coco(path, text, checker)
    lines = [_parse_kaggle_line(line) for line in text.splitlines()]
    if all(parsed is None for parsed, _ in lines):
        raise ValueError(f"annotation file {path} has no box in either format: {_FORMATS}")
    annotations = Annotations()
    for number, (parsed, problem) in enumerate(lines, start=1):
        where = f"{path.name}:{number}"
        if parsed is None:
            annotations.rejected.append(Rejected(where, problem))
            continue
        written_path, box, label = parsed
        checker.check(annotations, where, written_path, box, label)
    return annotations


_FORMATS = ("expected Kaggle lines 'path,x1,y1,x2,y2,class' or a COCO JSON object with "
            f"{', '.join(repr(key) for key in COCO_KEYS)}")


def _parse_kaggle_line(line: str) -> tuple[tuple[str, tuple[float, float, float, float], str] | None, str]:
    """(path, box, class) of a Kaggle line, or (None, why it is not one)."""
    if not line.strip():
        return None, "blank line"
    fields = [value.strip() for value in line.split(",")]
    if len(fields) != KAGGLE_FIELDS:
        return None, f"malformed line: {len(fields)} comma-separated fields, expected path,x1,y1,x2,y2,class"
    written_path, *numbers, label = fields
    try:
        box = tuple(float(value) for value in numbers)
    except ValueError:
        return None, f"malformed line: coordinates {', '.join(numbers)} are not all numbers"
    if not written_path or not label:
        return None, "malformed line: empty path or class"
    return (written_path, box, label), ""  # type: ignore[return-value]


def _read_coco(path: Path, text: str, checker: _BoxChecker) -> Annotations:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"annotation file {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list) for key in COCO_KEYS):
        raise ValueError(f"annotation file {path} is JSON but not COCO: {_FORMATS} (each a list)")
    images = {entry.get("id"): entry.get("file_name") for entry in document["images"] if isinstance(entry, dict)}
    categories = {entry.get("id"): entry.get("name") for entry in document["categories"] if isinstance(entry, dict)}
    annotations = Annotations()
    for number, entry in enumerate(document["annotations"]):
        entry = entry if isinstance(entry, dict) else {}
        where = f"{path.name}: " + (f"annotation id {entry['id']}" if "id" in entry else f"annotation #{number}")
        bbox = entry.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(value) for value in bbox):
            annotations.rejected.append(Rejected(where, f"bbox {bbox!r} is not [x, y, width, height]"))
        elif not isinstance(images.get(entry.get("image_id")), str):
            annotations.rejected.append(Rejected(where, f"image_id {entry.get('image_id')!r} names no image"))
        elif not isinstance(categories.get(entry.get("category_id")), str):
            annotations.rejected.append(Rejected(where, f"category_id {entry.get('category_id')!r} names no category"))
        else:
            x, y, width, height = (float(value) for value in bbox)
            box = (x, y, x + width, y + height)
            checker.check(annotations, where, images[entry["image_id"]], box, categories[entry["category_id"]])
    return annotations


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class RealScenes(Dataset[tuple[torch.Tensor, Target]]):
    """Annotated images in :class:`~.scenes.SceneDataset`'s format, so real boxes can be mixed into training.

    Each image is resized so its longer side is ``size`` and padded with black at the right and bottom to
    size x size (the scenes' shape; the aspect ratio is kept, so characters are not distorted); its boxes are
    scaled with it. Labels are the indices of the box's class in ``classes``; a box of another class is not
    kept and is listed in :attr:`rejected` (an image left with no box is no item). An image that no longer decodes
    raises ValueError naming it.
    """

    def __init__(self, annotations: Annotations, classes: Sequence[str], size: int = SceneRecipe.size) -> None:
        index = {name: i for i, name in enumerate(classes)}
        self.size = size
        self.rejected: list[Rejected] = []
        self.images: list[tuple[Path, np.ndarray, np.ndarray]] = []
        for path, boxes in annotations.by_image().items():
            known = []
            for box in boxes:
                if box.label in index:
                    known.append(box)
                else:
                    self.rejected.append(Rejected(box.where or str(path), f"class {box.label!r} is not one of the "
                                                  f"{len(index)} classes"))
            if known:
                self.images.append((
                    path,
                    np.array([box.box for box in known], dtype=np.float32),
                    np.array([index[box.label] for box in known], dtype=np.int64),
                ))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, Target]:
        path, boxes, labels = self.images[item]
        try:
            image = load_rgb(path)
        except UnreadableImage as error:
            raise ValueError(f"annotated image {path} cannot be read: {error}") from None
        scale = self.size / max(image.size)
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        canvas = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        canvas[:height, :width] = np.asarray(image.resize((width, height), PIL.Image.BILINEAR))
        scaled = boxes * np.array([width / image.width, height / image.height] * 2, dtype=np.float32)
        return detection_item(canvas, scaled, labels)


def real_scenes(annotations: Annotations, classes: Sequence[str], size: int = SceneRecipe.size) -> RealScenes:
    """The annotated images as a detection dataset (:class:`RealScenes`)."""
    return RealScenes(annotations, classes, size)

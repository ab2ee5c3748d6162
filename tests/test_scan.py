import csv
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from simpsons_classifier.config import Config
from simpsons_classifier.data.dataset import ImageDataset
from simpsons_classifier.data.images import load_rgb
from simpsons_classifier.data.run_data import prepare_run_data
from simpsons_classifier.data.scan import DatasetError, label_from_filename, resolve_root, scan_dataset

from kaggle_layouts import CHARACTERS, MOST_COMMON, PER_CLASS, make_characters_download, make_journey_download
from synthetic import draw_character


def _modes(tmp_path):
    """One file per PIL mode, each with a known colour at pixel (0, 0) after conversion."""
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # transparent: must become white
    files = {
        "rgb.png": (Image.new("RGB", (8, 8), (10, 20, 30)), (10, 20, 30)),
        "rgba.png": (rgba, (255, 255, 255)),
        "la.png": (Image.new("LA", (8, 8), (0, 0)), (255, 255, 255)),
        "l.png": (Image.new("L", (8, 8), 77), (77, 77, 77)),
        "p.png": (Image.new("RGB", (8, 8), (0, 0, 255)).convert("P"), (0, 0, 255)),
        "cmyk.jpg": (Image.new("CMYK", (8, 8), (0, 0, 0, 0)), (255, 255, 255)),
        "i16.png": (Image.fromarray(np.array([[0, 65535]] * 4, dtype=np.uint16)), (0, 0, 0)),
        "bw.png": (Image.new("1", (8, 8), 1), (255, 255, 255)),
    }
    transparent_p = Image.new("P", (8, 8), 1)
    transparent_p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    transparent_p.info["transparency"] = 0
    transparent_p.putpixel((0, 0), 0)
    files["p_transparent.png"] = (transparent_p, (255, 255, 255))
    for name, (image, _) in files.items():
        image.save(tmp_path / name)
    return {name: expected for name, (_, expected) in files.items()}


def test_every_mode_becomes_rgb(tmp_path):
    for name, expected in _modes(tmp_path).items():
        image = load_rgb(tmp_path / name)
        assert image.mode == "RGB", name
        assert np.allclose(image.getpixel((0, 0)), expected, atol=3), name


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_an_image_is_turned_upright_as_its_exif_orientation_says(tmp_path, suffix):
    """Stored 40x20 with red on the left and orientation 6 (turn 90 degrees clockwise to view): read 20x40 with red
    on top, as a photo viewer or a browser shows it."""
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    stored.save(tmp_path / f"sideways{suffix}", exif=exif, quality=95)
    for draft in (None, (64, 64)):
        upright = load_rgb(tmp_path / f"sideways{suffix}", draft_size=draft)
        assert upright.size == (20, 40)
        assert np.allclose(upright.getpixel((10, 5)), (255, 0, 0), atol=40)
        assert np.allclose(upright.getpixel((10, 35)), (0, 0, 255), atol=40)


def _broken_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    draw_character(0, 0).save(folder / "good.png")
    draw_character(0, 1).save(folder / "png_named.txt", format="PNG")  # judged by content, not extension
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    buffer = folder / "full.jpg"
    draw_character(0, 2, size=256).save(buffer, quality=95)
    (folder / "truncated.jpg").write_bytes(buffer.read_bytes()[:600])
    buffer.unlink()
    draw_character(0, 3, size=256).save(folder / "full.png")
    (folder / "truncated.png").write_bytes((folder / "full.png").read_bytes()[:300])
    (folder / "full.png").unlink()
    os.symlink(folder / "missing.png", folder / "dangling.png")


def test_broken_files_are_skipped_counted_and_listed(tmp_path):
    _broken_files(tmp_path / "data" / "bart")
    draw_character(1, 0).save(tmp_path / "data" / "bart" / "second.png")
    result = scan_dataset(tmp_path / "data", progress=False)
    assert sorted(os.path.basename(s.path) for s in result.samples) == ["good.png", "png_named.txt", "second.png"]
    reasons = {os.path.basename(s.path): s.reason for s in result.skipped}
    assert set(reasons) == {"empty.png", "text.jpg", "truncated.jpg", "truncated.png", "dangling.png"}
    assert reasons["empty.png"] == "empty file"
    assert "cannot identify" in reasons["text.jpg"]
    result.write_skipped(tmp_path / "skipped.csv")
    with open(tmp_path / "skipped.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and all(row["reason"] for row in rows)


def test_kaggle_double_nesting_is_walked_through(tmp_path):
    inner = tmp_path / "simpsons_dataset" / "simpsons_dataset"
    for c, name in enumerate(["bart_simpson", "homer_simpson"]):
        (inner / name).mkdir(parents=True)
        for i in range(3):
            draw_character(c, i).save(inner / name / f"pic_{i:04d}.jpg")
    assert resolve_root(tmp_path / "simpsons_dataset") == inner
    result = scan_dataset(tmp_path / "simpsons_dataset", progress=False)
    assert result.classes == ["bart_simpson", "homer_simpson"]
    assert result.class_counts() == {"bart_simpson": 3, "homer_simpson": 3}


def test_labels_from_filenames_in_a_flat_test_folder(tmp_path):
    folder = tmp_path / "kaggle_simpsons_testset"
    folder.mkdir()
    for i, name in enumerate(["bart_simpson_12.jpg", "bart_simpson_3.jpg", "lisa_simpson_7.jpg"]):
        draw_character(i, 0).save(folder / name)
    assert label_from_filename("mr_burns_42.png") == "mr_burns"
    result = scan_dataset(folder, labels_from_filenames=True, progress=False)
    assert result.class_counts() == {"bart_simpson": 2, "lisa_simpson": 1}
    with pytest.raises(DatasetError, match="--labels-from-filenames"):
        scan_dataset(folder, progress=False)


def test_small_classes_are_dropped_and_reported(tmp_path):
    for c, count in enumerate([5, 1]):
        (tmp_path / f"c{c}").mkdir()
        for i in range(count):
            draw_character(c, i).save(tmp_path / f"c{c}" / f"{i}.png")
    result = scan_dataset(tmp_path, min_images_per_class=2, progress=False)
    assert result.classes == ["c0"] and result.dropped_classes == {"c1": 1}


def test_training_data_of_fewer_than_two_characters_is_refused_before_any_image_is_read_by_the_model(tmp_path):
    """A one-class folder used to fail in scikit-learn's probe, after a pass over every image."""
    for c, count in enumerate([5, 1]):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(count):
            draw_character(c, i).save(tmp_path / "data" / f"c{c}" / f"{i}.png")
    with pytest.raises(DatasetError, match=r"holds images of 1 character \(c0\); left out for having fewer than "
                                           r"min_images_per_class=2 images: c1 \(1\): a classifier needs at least 2"):
        prepare_run_data(Config(), tmp_path / "data", tmp_path / "run", progress=False)


def test_missing_folder_and_folder_without_images(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "nope", progress=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_text("junk")
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError, match="no readable image"):
        scan_dataset(tmp_path, progress=False)


def test_dataset_replaces_a_file_that_broke_after_the_scan(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    for i in range(2):
        draw_character(i, 0).save(folder / f"{i}.png")
    result = scan_dataset(tmp_path, progress=False)
    (folder / "0.png").write_bytes(b"garbage")
    dataset = ImageDataset(result.samples, ["c"], transform=lambda image: np.asarray(image))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, target = dataset[0]
    assert target == 0 and image.shape == (48, 48, 3)
    assert any("0.png" in str(w.message) for w in caught)


def _expected_counts():
    """Every character's images, less the truncated one in homer_simpson (the non-image is no image anyway)."""
    return {name: PER_CLASS + (name == MOST_COMMON) for name in CHARACTERS}


def test_kaggle_characters_download_with_its_duplicate_inner_copy(tmp_path):
    root = make_characters_download(tmp_path / "characters")
    inner = root / "simpsons_dataset" / "simpsons_dataset"
    assert resolve_root(root / "simpsons_dataset") == inner
    result = scan_dataset(root / "simpsons_dataset", progress=False)
    assert result.class_counts() == _expected_counts()  # the copy is neither a class nor counted twice
    assert all(s.path.startswith(str(inner)) for s in result.samples)
    assert sorted(os.path.basename(s.path) for s in result.skipped) == ["Thumbs.db", "pic_0000.jpg"]


def test_kaggle_test_set_labels_come_from_names_with_underscores_and_a_number(tmp_path):
    root = make_characters_download(tmp_path / "characters")
    assert label_from_filename("abraham_grampa_simpson_12.jpg") == "abraham_grampa_simpson"
    result = scan_dataset(root / "kaggle_simpson_testset", labels_from_filenames=True, progress=False)
    assert result.class_counts() == {name: 3 for name in CHARACTERS}


def test_the_top_of_a_kaggle_download_is_refused_with_the_folders_to_use(tmp_path):
    characters = make_characters_download(tmp_path / "characters")
    for labels_from_filenames in (False, True):
        with pytest.raises(DatasetError, match="train on .*characters/simpsons_dataset; its test set is "
                                               ".*kaggle_simpson_testset \\(evaluate with --labels-from-filenames"):
            scan_dataset(characters, labels_from_filenames=labels_from_filenames, progress=False)
    make_journey_download(tmp_path / "journey")
    with pytest.raises(DatasetError, match="journey-springfield.*train on .*journey/train; .*testset \\(answer"):
        scan_dataset(tmp_path / "journey", progress=False)


def test_kaggle_competition_training_folder(tmp_path):
    make_journey_download(tmp_path / "journey")
    result = scan_dataset(tmp_path / "journey" / "train", progress=False)
    assert result.root == tmp_path / "journey" / "train" / "simpsons_dataset"
    assert result.class_counts() == _expected_counts()


def test_a_same_named_folder_beside_other_classes_is_refused(tmp_path):
    for folder in (tmp_path / "data" / "data" / "bart", tmp_path / "data" / "lisa"):
        folder.mkdir(parents=True)
        draw_character(0, 0).save(folder / "0.png")
    with pytest.raises(DatasetError, match="a folder data/ of other class folders \\(lisa only outside it\\)"):
        scan_dataset(tmp_path / "data", progress=False)

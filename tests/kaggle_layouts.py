"""The two Kaggle Simpsons downloads in miniature, with their quirks: tiny synthetic characters in the real
folder names, a doubly nested training folder with a duplicate inner copy, file-name labels with underscores and
a trailing number, an unlabelled test set of img0..img12, and broken files."""

from __future__ import annotations

from pathlib import Path

from synthetic import draw_character

CHARACTERS = ("abraham_grampa_simpson", "bart_simpson", "homer_simpson", "lisa_simpson")
MOST_COMMON = "homer_simpson"
"""The class with the most training images (the others have ``PER_CLASS``)."""
PER_CLASS = 4
IMAGE_SIZE = 32
TEST_IMAGES = 13
UNREADABLE_TEST_IMAGES = ("img5.jpg", "img9.jpg")
"""A truncated JPEG and a file that is not an image at all, as a broken download would leave them."""


def _save(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)


def make_class_folders(folder: Path) -> Path:
    """``folder/<name>/pic_NNNN.jpg`` for every character, plus a non-image and a truncated file."""
    for c, name in enumerate(CHARACTERS):
        for i in range(PER_CLASS + 2 * (name == MOST_COMMON)):
            _save(draw_character(c, i, size=IMAGE_SIZE), folder / name / f"pic_{i:04d}.jpg")
    (folder / CHARACTERS[1] / "Thumbs.db").write_bytes(b"not an image")
    truncate(folder / CHARACTERS[2] / "pic_0000.jpg")
    return folder


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def make_characters_download(root: Path) -> Path:
    """alexattia/the-simpsons-characters-dataset as unzipped: ``simpsons_dataset/`` holding the class folders and
    a duplicate copy ``simpsons_dataset/simpsons_dataset/``, ``kaggle_simpson_testset/kaggle_simpson_testset/``
    of ``<name>_<n>.jpg``, and ``annotation.txt``."""
    make_class_folders(root / "simpsons_dataset" / "simpsons_dataset")
    make_class_folders(root / "simpsons_dataset")
    test = root / "kaggle_simpson_testset" / "kaggle_simpson_testset"
    for c, name in enumerate(CHARACTERS):
        for n in (0, 12, 3):
            _save(draw_character(c, 50 + n, size=IMAGE_SIZE), test / f"{name}_{n}.jpg")
    (root / "annotation.txt").write_text("./characters/bart_simpson/pic_0000.jpg,1,2,30,30,bart_simpson\n")
    return root


def make_journey_download(root: Path) -> dict[str, str]:
    """The journey-springfield competition as unzipped: ``train/simpsons_dataset/<name>/``, an unlabelled
    ``testset/testset/img0.jpg..img12.jpg`` (two of them unreadable) and ``sample_submission.csv``; returns the
    character drawn in each readable test image."""
    make_class_folders(root / "train" / "simpsons_dataset")
    truth = {}
    for n in range(TEST_IMAGES):
        c = n % len(CHARACTERS)
        name = f"img{n}.jpg"
        _save(draw_character(c, 70 + n, size=IMAGE_SIZE), root / "testset" / "testset" / name)
        truth[name] = CHARACTERS[c]
    testset = root / "testset" / "testset"
    truncate(testset / UNREADABLE_TEST_IMAGES[0])
    (testset / UNREADABLE_TEST_IMAGES[1]).write_text("<html>404 not found</html>")
    for name in UNREADABLE_TEST_IMAGES:
        del truth[name]
    (root / "sample_submission.csv").write_text(
        "Id,Expected\n" + "".join(f"img{n}.jpg,bart_simpson\n" for n in range(TEST_IMAGES)))
    return truth

"""Detection data: composed scenes (boxes match the pasted pixels, reproducible) and real boxes read from Kaggle
annotation.txt and COCO JSON files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from simpsons_classifier.detection.annotations import read_boxes, real_scenes
from simpsons_classifier.detection.scenes import (
    Placement,
    SceneComposer,
    SceneDataset,
    SceneRecipe,
    collate_scenes,
    load_cutout,
    split_backgrounds,
)

COLOURS = ((230, 20, 20), (20, 20, 230), (20, 200, 20))
"""One solid colour per class: red, blue, green."""
GREY = (128, 128, 128)
SIZE = 160
PLAIN = SceneRecipe(size=SIZE, max_characters=1, scale=(0.3, 0.6), colour_jitter=(0.0, 0.0, 0.0, 0.0))
TOLERANCE_PX = 1.5
"""A box may reach past its colour by the cut-out's feathered outline, resized (under a pixel here)."""


def sprite_samples(folder: Path) -> list[tuple[Path, int]]:
    """One 200 x 200 sprite per class: a solid rectangle on white, so the cut-out is exact."""
    samples = []
    for label, colour in enumerate(COLOURS):
        image = np.full((200, 200, 3), 255, np.uint8)
        image[20:180, 30:170] = colour
        path = folder / f"sprite{label}.png"
        Image.fromarray(image).save(path)
        samples.append((path, label))
    return samples


def colour_box(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray | None:
    """x1, y1, x2, y2 (pixel edges) of the pixels of ``colour`` (at least half-way there from anything else)."""
    near = (np.abs(image.astype(int) - colour).max(axis=2) < 60)
    rows, columns = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    if not len(rows):
        return None
    return np.array([columns[0], rows[0], columns[-1] + 1, rows[-1] + 1], np.float32)


def grey_background() -> Image.Image:
    return Image.new("RGB", (240, 200), GREY)


def placement(composer: SceneComposer, sample: int, top: int, left: int, height: int) -> Placement:
    """Sample ``sample`` at (left, top), ``height`` pixels high, its width following the cut-out's aspect."""
    source_height, source_width = load_cutout(composer.samples[sample][0], composer.recipe.size).rgb.shape[:2]
    return Placement(sample, top, left, round(height * source_width / source_height), height, flip=False)


@pytest.fixture
def composer(tmp_path: Path) -> SceneComposer:
    return SceneComposer(sprite_samples(tmp_path), [grey_background()], PLAIN, seed=3)


def assert_boxes_match_colours(scene, expected_labels: list[int]) -> None:
    assert scene.labels.tolist() == expected_labels
    for box, label in zip(scene.boxes, scene.labels):
        expected = colour_box(scene.image, COLOURS[label])
        assert expected is not None
        np.testing.assert_allclose(box, expected, atol=TOLERANCE_PX)


def test_box_is_the_pasted_sprite(composer: SceneComposer) -> None:
    background = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    scene = composer.compose(background, [placement(composer, 0, top=10, left=20, height=84)])
    assert_boxes_match_colours(scene, [0])
    assert scene.image.shape == (SIZE, SIZE, 3) and scene.image.dtype == np.uint8
    assert scene.boxes.dtype == np.float32 and scene.labels.dtype == np.int64


def test_box_is_clipped_to_the_scene(composer: SceneComposer) -> None:
    background = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    scene = composer.compose(background, [placement(composer, 1, top=-20, left=120, height=84)])
    assert_boxes_match_colours(scene, [1])
    assert scene.boxes[0, 1] == 0 and scene.boxes[0, 2] == SIZE


def test_occluded_box_shrinks_to_the_visible_part(composer: SceneComposer) -> None:
    background = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    red = placement(composer, 0, top=10, left=10, height=84)
    alone = composer.compose(background, [red])
    scene = composer.compose(background, [red, placement(composer, 1, top=10, left=50, height=84)])
    assert_boxes_match_colours(scene, [0, 1])
    red_alone, red_covered = alone.boxes[0], scene.boxes[0]
    assert red_covered[2] < red_alone[2] - 20  # its right part is hidden by the blue one
    np.testing.assert_allclose(red_covered[[0, 1, 3]], red_alone[[0, 1, 3]], atol=TOLERANCE_PX)


def test_hidden_character_is_dropped(composer: SceneComposer) -> None:
    background = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    small_red = placement(composer, 0, top=40, left=40, height=40)
    big_blue = placement(composer, 1, top=10, left=10, height=120)
    scene = composer.compose(background, [small_red, big_blue])
    assert colour_box(scene.image, COLOURS[0]) is None
    assert_boxes_match_colours(scene, [1])


def test_mostly_hidden_character_is_dropped_below_min_visible(composer: SceneComposer) -> None:
    background = np.full((SIZE, SIZE, 3), GREY, np.uint8)
    red = placement(composer, 0, top=10, left=10, height=84)
    blue_over_most = placement(composer, 1, top=10, left=26, height=84)  # leaves a strip of about a quarter
    scene = composer.compose(background, [red, blue_over_most])
    assert colour_box(scene.image, COLOURS[0]) is not None  # still in the image...
    assert scene.labels.tolist() == [1]  # ...but below min_visible=0.3: no box


def test_random_scenes_box_every_sprite(composer: SceneComposer) -> None:
    clipped = 0
    for index in range(20):
        scene = composer.scene(index)
        assert_boxes_match_colours(scene, scene.labels.tolist())
        assert len(scene.labels) == 1  # one character, never hidden
        clipped += bool(scene.boxes[0, 0] == 0 or scene.boxes[0, 2] == SIZE)
    assert clipped > 0  # some characters stick out of the scene and are clipped


def test_scenes_hold_up_to_max_characters(tmp_path: Path) -> None:
    recipe = SceneRecipe(size=SIZE, max_characters=3, min_visible=0.0)
    composer = SceneComposer(sprite_samples(tmp_path), [grey_background()], recipe)
    counts = {len(composer.scene(index).labels) for index in range(30)}
    assert counts <= {1, 2, 3} and len(counts) > 1


def test_scene_depends_on_seed_and_index_only(tmp_path: Path) -> None:
    samples = sprite_samples(tmp_path)
    backgrounds = [grey_background(), Image.new("RGB", (100, 300), (10, 90, 40))]
    recipe = SceneRecipe(size=SIZE)
    first = SceneComposer(samples, backgrounds, recipe, seed=7)
    torch.manual_seed(1)
    expected = first.scene(5)
    other = SceneComposer(samples, backgrounds, recipe, seed=7)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    other.scene(9), other.scene(2)
    again = other.scene(5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    np.testing.assert_array_equal(again.image, expected.image)
    np.testing.assert_array_equal(again.boxes, expected.boxes)
    np.testing.assert_array_equal(again.labels, expected.labels)
    assert not np.array_equal(first.scene(6).image, expected.image)
    assert not np.array_equal(SceneComposer(samples, backgrounds, recipe, seed=8).scene(5).image, expected.image)


def test_unreadable_image_is_skipped_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    samples = sprite_samples(tmp_path)[:1] + [(broken, 2)]
    composer = SceneComposer(samples, [grey_background()], SceneRecipe(size=SIZE, max_characters=3))
    with caplog.at_level(logging.WARNING):
        labels = [label for index in range(10) for label in composer.scene(index).labels.tolist()]
    assert labels and set(labels) == {0}
    assert len([record for record in caplog.records if str(broken) in record.getMessage()]) == 1


def test_dataset_yields_torchvision_detection_targets(composer: SceneComposer) -> None:
    dataset = SceneDataset(composer, length=4)
    images, targets = collate_scenes([dataset[index] for index in range(len(dataset))])
    assert len(images) == len(targets) == 4
    scene = composer.scene(2)
    assert images[2].shape == (3, SIZE, SIZE) and images[2].dtype == torch.uint8
    assert torch.equal(images[2], torch.from_numpy(scene.image).permute(2, 0, 1))
    assert targets[2]["boxes"].dtype == torch.float32 and targets[2]["boxes"].shape == (len(scene.labels), 4)
    assert targets[2]["labels"].dtype == torch.int64 and targets[2]["labels"].tolist() == scene.labels.tolist()
    with pytest.raises(IndexError):
        dataset[4]


def test_worker_processes_compose_the_same_scenes(composer: SceneComposer) -> None:
    dataset = SceneDataset(composer, length=3)
    loader = DataLoader(dataset, batch_size=3, num_workers=1, collate_fn=collate_scenes)
    images, targets = next(iter(loader))
    for index in range(3):
        image, target = dataset[index]
        assert torch.equal(images[index], image)
        assert torch.equal(targets[index]["boxes"], target["boxes"])


def test_held_out_backgrounds_are_disjoint_from_training_ones() -> None:
    backgrounds = [Image.new("RGB", (32, 32), (i * 10, 0, 0)) for i in range(18)]
    training, held_out = split_backgrounds(backgrounds, held_out_fraction=0.2, seed=0)
    assert len(held_out) == 4 and len(training) == 14
    assert not {id(image) for image in training} & {id(image) for image in held_out}
    assert {id(image) for image in training + held_out} == {id(image) for image in backgrounds}
    assert split_backgrounds(backgrounds, 0.2, seed=0) == (training, held_out)
    assert split_backgrounds(backgrounds, 0.2, seed=1)[1] != held_out
    two = split_backgrounds(backgrounds[:2], held_out_fraction=0.9, seed=0)
    assert len(two[0]) == len(two[1]) == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_backgrounds(backgrounds[:1], 0.5, seed=0)


# --- real boxes ---


def write_image(path: Path, width: int, height: int, box: tuple[int, int, int, int] | None = None) -> None:
    """A grey image with, when given, a red rectangle filling ``box`` (x1, y1, x2, y2)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), GREY, np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        pixels[y1:y2, x1:x2] = COLOURS[0]
    Image.fromarray(pixels).save(path)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "simpsons_dataset"
    write_image(root / "homer_simpson" / "pic_0000.png", 100, 80, box=(10, 20, 50, 60))
    write_image(root / "homer_simpson" / "pic_0001.jpg", 60, 50)
    write_image(root / "marge_simpson" / "pic_0000.png", 40, 40)
    return root


KAGGLE_LINES = [
    "./characters/homer_simpson/pic_0000.png,10,20,50,60,homer_simpson",  # 1 kept
    "./characters/homer_simpson/pic_0000.png,50,20,10,60,homer_simpson",  # 2 x2 <= x1
    "./characters/homer_simpson/pic_0000.png,10,60,50,60,homer_simpson",  # 3 y2 <= y1
    "./characters/homer_simpson/pic_0001.jpg,10.5,5.25,59.5,49,homer_simpson",  # 4 kept, float coordinates
    "./characters/homer_simpson/pic_0001.jpg,10,5,70,40,homer_simpson",  # 5 outside the 60x50 image
    "./characters/homer_simpson/pic_9999.jpg,1,2,3,4,homer_simpson",  # 6 file not found
    "",  # 7 blank
    "just some words",  # 8 malformed
    "./characters/marge_simpson/pic_0000.png,1,2,x,4,marge_simpson",  # 9 not numbers
    "./characters/marge_simpson/pic_0000.png,5,5,30,30,marge_simpson",  # 10 kept
]


def test_kaggle_annotation_quirks_are_rejected_with_line_and_reason(tmp_path: Path, data_root: Path) -> None:
    path = tmp_path / "annotation.txt"
    path.write_bytes("\r\n".join(KAGGLE_LINES).encode() + b"\r\n")  # Windows line endings
    annotations = read_boxes(path, data_root)
    kept = [(box.path, box.box, box.label) for box in annotations.boxes]
    assert kept == [
        (data_root / "homer_simpson" / "pic_0000.png", (10.0, 20.0, 50.0, 60.0), "homer_simpson"),
        (data_root / "homer_simpson" / "pic_0001.jpg", (10.5, 5.25, 59.5, 49.0), "homer_simpson"),
        (data_root / "marge_simpson" / "pic_0000.png", (5.0, 5.0, 30.0, 30.0), "marge_simpson"),
    ]
    reasons = {rejected.where: rejected.reason for rejected in annotations.rejected}
    assert list(reasons) == [f"annotation.txt:{line}" for line in (2, 3, 5, 6, 7, 8, 9)]
    assert "x2 10 <= x1 50 (degenerate box)" in reasons["annotation.txt:2"]
    assert "y2 60 <= y1 60 (degenerate box)" in reasons["annotation.txt:3"]
    assert "outside the 60x50 image" in reasons["annotation.txt:5"]
    assert "file not found" in reasons["annotation.txt:6"]
    assert reasons["annotation.txt:7"] == "blank line"
    assert "malformed" in reasons["annotation.txt:8"]
    assert "not all numbers" in reasons["annotation.txt:9"]
    assert list(annotations.by_image()) == [box.path for box in annotations.boxes][:1] + [
        data_root / "homer_simpson" / "pic_0001.jpg",
        data_root / "marge_simpson" / "pic_0000.png",
    ]


def test_coco_json_is_read_with_the_same_checks(tmp_path: Path, data_root: Path) -> None:
    document = {
        "images": [
            {"id": 1, "file_name": "homer_simpson/pic_0000.png", "width": 100, "height": 80},
            {"id": 2, "file_name": "marge_simpson/pic_0000.png", "width": 40, "height": 40},
            {"id": 3, "file_name": "marge_simpson/missing.png", "width": 40, "height": 40},
        ],
        "categories": [{"id": 7, "name": "homer_simpson"}, {"id": 8, "name": "marge_simpson"}],
        "annotations": [
            {"id": 40, "image_id": 1, "category_id": 7, "bbox": [10, 20, 40, 40]},  # kept
            {"id": 41, "image_id": 1, "category_id": 7, "bbox": [10, 20, 0, 40]},  # degenerate
            {"id": 42, "image_id": 2, "category_id": 8, "bbox": [20, 20, 30.5, 10]},  # outside
            {"id": 43, "image_id": 3, "category_id": 8, "bbox": [1, 1, 5, 5]},  # file not found
            {"id": 44, "image_id": 9, "category_id": 8, "bbox": [1, 1, 5, 5]},  # no such image
            {"id": 45, "image_id": 2, "category_id": 99, "bbox": [1, 1, 5, 5]},  # no such category
            {"id": 46, "image_id": 2, "category_id": 8, "bbox": [1, 1, 5]},  # malformed bbox
            {"id": 47, "image_id": 2, "category_id": 8, "bbox": [1.5, 2, 5, 6.25]},  # kept
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    annotations = read_boxes(path, data_root)
    assert [(box.path.name, box.box, box.label) for box in annotations.boxes] == [
        ("pic_0000.png", (10.0, 20.0, 50.0, 60.0), "homer_simpson"),
        ("pic_0000.png", (1.5, 2.0, 6.5, 8.25), "marge_simpson"),
    ]
    reasons = {rejected.where: rejected.reason for rejected in annotations.rejected}
    assert list(reasons) == [f"instances.json: annotation id {i}" for i in range(41, 47)]
    assert "degenerate" in reasons["instances.json: annotation id 41"]
    assert "outside the 40x40 image" in reasons["instances.json: annotation id 42"]
    assert "file not found" in reasons["instances.json: annotation id 43"]
    assert "image_id 9" in reasons["instances.json: annotation id 44"]
    assert "category_id 99" in reasons["instances.json: annotation id 45"]
    assert "bbox" in reasons["instances.json: annotation id 46"]


@pytest.mark.parametrize("content", [b"hello, world\nno boxes here\n", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", b'{"images": 3}',
                                     b"{not json"])
def test_a_file_in_neither_format_is_one_clear_error(tmp_path: Path, data_root: Path, content: bytes) -> None:
    path = tmp_path / "boxes.dat"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="boxes.dat"):
        read_boxes(path, data_root)


def test_a_missing_annotation_file_is_named(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        read_boxes(tmp_path / "nowhere.txt", data_root)


def test_real_scenes_resize_images_and_boxes_together(tmp_path: Path, data_root: Path) -> None:
    path = tmp_path / "annotation.txt"
    path.write_text("\n".join(KAGGLE_LINES))
    dataset = real_scenes(read_boxes(path, data_root), ["homer_simpson"], size=SIZE)
    assert [rejected.where for rejected in dataset.rejected] == ["annotation.txt:10"]
    assert "marge_simpson" in dataset.rejected[0].reason
    assert len(dataset) == 2
    image, target = dataset[0]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
    assert target["labels"].tolist() == [0]
    box = target["boxes"][0].numpy()
    np.testing.assert_allclose(box, [16, 32, 80, 96])  # the 100 x 80 image scaled by 1.6
    np.testing.assert_allclose(box, colour_box(image.permute(1, 2, 0).numpy(), COLOURS[0]), atol=TOLERANCE_PX)
    assert not image[:, 128:, :].any()  # padded below the 160 x 128 image

"""Tests of the reference augmentation: train/eval transforms, background mixing, backgrounds, batch mixing."""

from __future__ import annotations

import re
import socket

import numpy as np
import PIL.Image
import pytest
import torch
from torchvision import tv_tensors

from simpsons_classifier.augment import (
    BackgroundMixing,
    BatchPipeline,
    build_batch_mixer,
    build_eval_transform,
    build_train_transform,
    load_backgrounds,
    torchvision_engine,
)
from simpsons_classifier.config import Config

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 64
ODD_SIZES = [(397, 301), (301, 397), (33, 77)]  # (width, height), including one smaller than SIZE


def make_config(**overrides) -> Config:
    return Config(backbone="efficientnet_lite0", weights="none", image_size=SIZE, augment_engine="torchvision",
                  **overrides)


def noise_image(width: int, height: int, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def solid_image(colour: tuple[int, int, int], width: int = 120, height: int = 90) -> PIL.Image.Image:
    return PIL.Image.new("RGB", (width, height), colour)


SPRITE_SIDE = 96
BODY_RADIUS = 28
OUTLINE_PX = 2
EYE_RADIUS = 9
EYE_OFFSET = 12


def sprite_on_white() -> tuple[np.ndarray, np.ndarray]:
    """A yellow head with a black outline and white eyes on a white backdrop, and each pixel's distance to the
    centre. The white of the eyes has the backdrop's colour but is enclosed by the character."""
    ys, xs = np.mgrid[:SPRITE_SIDE, :SPRITE_SIDE]
    centre = SPRITE_SIDE / 2
    distance = np.hypot(ys - centre, xs - centre)
    image = np.full((SPRITE_SIDE, SPRITE_SIDE, 3), 255, np.uint8)
    image[distance <= BODY_RADIUS + OUTLINE_PX] = (0, 0, 0)
    image[distance <= BODY_RADIUS] = (255, 217, 15)
    for dx in (-EYE_OFFSET, EYE_OFFSET):
        eye = np.hypot(ys - centre, xs - centre - dx)
        image[eye <= EYE_RADIUS] = (255, 255, 255)
        image[eye <= EYE_RADIUS / 3] = (0, 0, 0)
    return image, distance


# --- train / eval transforms ---


@pytest.mark.parametrize("strong_aug_prob", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("width,height", ODD_SIZES)
def test_train_transform_returns_normalised_float_tensor(strong_aug_prob, width, height):
    transform = build_train_transform(make_config(strong_aug_prob=strong_aug_prob, background_mix_prob=1.0), MEAN, STD)
    torch.manual_seed(0)
    for _ in range(6):
        out = transform(noise_image(width, height))
        assert type(out) is torch.Tensor
        assert out.dtype == torch.float32
        assert out.shape == (3, SIZE, SIZE)
        assert out.min() < 0  # normalised, not in [0, 1]


@pytest.mark.parametrize("width,height", [*ODD_SIZES, (250, 60)])
def test_eval_transform_resizes_shorter_side_and_centre_crops(width, height):
    # Left and right thirds red, middle third blue: the centre crop of a wide image sees only blue, and the
    # shorter side being resized to SIZE means a tall image keeps all three columns.
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 3] = (255, 0, 0)
    array[:, width // 3 : 2 * width // 3] = (0, 0, 255)
    array[:, 2 * width // 3 :] = (255, 0, 0)
    transform = build_eval_transform(SIZE, MEAN, STD)
    out = transform(PIL.Image.fromarray(array))
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, SIZE, SIZE)
    assert torch.equal(out, transform(PIL.Image.fromarray(array)))
    red_in_edge_columns = (out[0, :, [0, -1]] > out[2, :, [0, -1]]).all()
    assert bool(red_in_edge_columns) == (width / height < 3)  # a crop of a 3:1-or-wider image is all blue


def test_eval_transform_normalises_with_mean_and_std():
    out = build_eval_transform(SIZE, MEAN, STD)(solid_image((255, 255, 255)))
    expected = torch.tensor([(1 - m) / s for m, s in zip(MEAN, STD, strict=True)])
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected)


def stub_pipelines(monkeypatch):
    monkeypatch.setattr(torchvision_engine, "weak_pipeline", lambda cfg, mean, std: lambda image: "weak")
    monkeypatch.setattr(
        torchvision_engine, "strong_pipeline", lambda cfg, backgrounds, mean, std: lambda image: "strong"
    )


def test_strong_pipeline_is_chosen_with_strong_aug_prob(monkeypatch):
    stub_pipelines(monkeypatch)
    draws = 4000
    p = 0.7
    transform = build_train_transform(make_config(strong_aug_prob=p, background_mix_prob=0.0), MEAN, STD)
    torch.manual_seed(0)
    strong = sum(transform(None) == "strong" for _ in range(draws))
    tolerance = 5 * (p * (1 - p) / draws) ** 0.5
    assert abs(strong / draws - p) < tolerance


@pytest.mark.parametrize("p,expected", [(0.0, "weak"), (1.0, "strong")])
def test_strong_aug_prob_extremes_pick_one_pipeline(monkeypatch, p, expected):
    stub_pipelines(monkeypatch)
    transform = build_train_transform(make_config(strong_aug_prob=p, background_mix_prob=0.0), MEAN, STD)
    assert {transform(None) for _ in range(500)} == {expected}


def test_train_transform_is_reproducible_under_torch_seed():
    transform = build_train_transform(make_config(strong_aug_prob=0.7, background_mix_prob=0.5), MEAN, STD)
    image = noise_image(211, 157)

    def run(seed):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for _ in range(8)])

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


# --- background mixing ---


def test_background_mixing_replaces_flat_backdrop_and_keeps_the_character():
    image, distance = sprite_on_white()
    mixing = BackgroundMixing([solid_image((40, 90, 160))], p=1.0)
    torch.manual_seed(0)
    out = np.asarray(mixing(PIL.Image.fromarray(image)))
    assert out.shape == image.shape
    character = distance <= BODY_RADIUS + OUTLINE_PX  # the eyes' white included
    np.testing.assert_array_equal(out[character], image[character])
    far_backdrop = distance > BODY_RADIUS + OUTLINE_PX + 8  # beyond the dilation and feathering
    assert (out[far_backdrop] != 255).any(axis=-1).all()


def test_background_mixing_of_a_scene_keeps_the_centre_and_replaces_the_corners():
    scene = torch.from_numpy(np.array(noise_image(120, 80))).permute(2, 0, 1).contiguous()
    mixing = BackgroundMixing([solid_image((200, 30, 30))], p=1.0)
    torch.manual_seed(0)
    out = mixing(tv_tensors.Image(scene))
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8
    change = (out.int() - scene.int()).abs().float().mean(dim=0)
    height, width = change.shape
    centre = change[height // 2 - 8 : height // 2 + 8, width // 2 - 12 : width // 2 + 12]
    corners = torch.stack([change[:8, :8], change[:8, -8:], change[-8:, :8], change[-8:, -8:]])
    assert centre.max() == 0
    assert corners.mean() > 40


def test_background_mixing_with_p_zero_is_identity():
    image = noise_image(50, 40)
    mixing = BackgroundMixing([solid_image((0, 0, 0))], p=0.0)
    assert mixing(image) is image


# --- backgrounds ---


def test_load_backgrounds_skips_unreadable_files_and_shrinks(tmp_path):
    (tmp_path / "nested").mkdir()
    noise_image(600, 400).save(tmp_path / "nested" / "good.png")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    backgrounds = load_backgrounds(str(tmp_path), size_hint=100)
    assert len(backgrounds) == 1
    assert backgrounds[0].mode == "RGB" and backgrounds[0].size == (150, 100)


def test_load_backgrounds_from_a_folder_without_images_names_it(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        load_backgrounds(str(tmp_path))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        build_train_transform(make_config(background_dir=str(tmp_path)), MEAN, STD)


def test_builtin_backgrounds_need_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("built-in backgrounds must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    backgrounds = load_backgrounds(None, size_hint=128)
    assert len(backgrounds) >= 10
    assert all(image.mode == "RGB" and min(image.size) <= 128 for image in backgrounds)
    assert len({image.tobytes() for image in backgrounds}) == len(backgrounds)


# --- batch mixing ---

NUM_CLASSES = 5
LABELS = torch.tensor([0, 1, 2, 3, 4, 0])


def image_batch() -> torch.Tensor:
    return torch.arange(len(LABELS), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 16, 16).clone()


@pytest.mark.parametrize("mixup_alpha,cutmix_alpha", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_batch_mixer_mixes_images_and_targets(mixup_alpha, cutmix_alpha):
    mixer = build_batch_mixer(
        make_config(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, mix_prob=1.0), NUM_CLASSES
    )
    torch.manual_seed(0)
    for _ in range(5):
        images, targets = mixer(image_batch(), LABELS)
        assert images.shape == image_batch().shape
        assert targets.shape == (len(LABELS), NUM_CLASSES) and targets.dtype == torch.float32
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(len(LABELS)))
        assert not torch.equal(images, image_batch())
        # image i (all pixels = i) is blended with image i - 1 in the proportion its target gives its own label
        # (checked where the two labels differ)
        own_share = targets[torch.arange(len(LABELS)), LABELS]
        distinct = torch.arange(1, len(LABELS))
        assert ((own_share[distinct] > 0) & (own_share[distinct] < 1)).all()
        torch.testing.assert_close(images[distinct].mean(dim=(1, 2, 3)), distinct - 1 + own_share[distinct])


def test_batch_mixer_left_alone_batches_get_one_hot_targets():
    mixer = build_batch_mixer(make_config(mix_prob=0.5), NUM_CLASSES)
    torch.manual_seed(0)
    applied = 0
    for _ in range(40):
        images, targets = mixer(image_batch(), LABELS)
        if torch.equal(images, image_batch()):
            torch.testing.assert_close(targets, torch.nn.functional.one_hot(LABELS, NUM_CLASSES).float())
        else:
            applied += 1
    assert 5 < applied < 35


@pytest.mark.parametrize("overrides", [{"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, {"mix_prob": 0.0}])
def test_batch_mixer_is_none_when_disabled(overrides):
    assert build_batch_mixer(make_config(**overrides), NUM_CLASSES) is None


# --- outlier exposure ---


def test_outlier_exposure_appends_background_crops_with_uniform_targets(tmp_path):
    solid_image((200, 40, 90)).save(tmp_path / "backdrop.png")
    config = make_config(mix_prob=0.0, outlier_exposure=0.5, background_dir=str(tmp_path))
    pipeline = BatchPipeline(config, MEAN, STD, NUM_CLASSES, torch.device("cpu"))
    samples = torch.zeros(len(LABELS), 3, SIZE, SIZE)  # as the torchvision engine hands them over: normalised
    torch.manual_seed(0)
    images, targets = pipeline(samples, LABELS)
    torch.manual_seed(0)
    again, _ = pipeline(samples, LABELS)

    assert images.shape == (len(LABELS) + 3, 3, SIZE, SIZE) and torch.equal(images, again)  # torch's RNG only
    assert torch.equal(images[: len(LABELS)], samples)
    outliers = images[len(LABELS) :]
    assert (outliers.flatten(2).std(dim=2) < 1e-5).all()  # crops of the one flat backdrop, colour-jittered
    assert len({tuple(outlier[:, 0, 0].tolist()) for outlier in outliers}) == 3  # each jittered on its own
    torch.testing.assert_close(targets[: len(LABELS)], torch.nn.functional.one_hot(LABELS, NUM_CLASSES).float())
    torch.testing.assert_close(targets[len(LABELS) :], torch.full((3, NUM_CLASSES), 1 / NUM_CLASSES))
    # through the training loss, label smoothing and all, an outlier costs Hendrycks' mean -log p over classes
    logits = torch.randn(3, NUM_CLASSES)
    torch.testing.assert_close(
        torch.nn.functional.cross_entropy(logits, targets[len(LABELS) :], label_smoothing=0.03),
        -logits.log_softmax(dim=1).mean())


def test_outlier_exposure_is_off_by_default():
    assert BatchPipeline(make_config(), MEAN, STD, NUM_CLASSES, torch.device("cpu")).outliers is None

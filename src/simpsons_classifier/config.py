"""One typed config for a training run.

The defaults are a recipe that adapts to the data and the budget (they are what a run uses wherever a config
does not say otherwise): the head starts from a linear probe on the frozen features (LP-FT), which is also scored
as epoch 0 so the best checkpoint is never worse than where fine-tuning started; the learning rate follows the
optimiser steps (warm-up, then cosine decay) and scales with the batch size; the last stage is unfrozen at a
fraction of the run; the EMA's horizon follows the number of steps; imbalanced classes are sampled by a rule.
The report's recipe (ResNet101, fresh head, 2e-4 / 2e-5, head alone for 5 epochs, ReduceLROnPlateau, EMA 0.999)
is spelled out in full in ``configs/reference.yaml``.

A run's config is built in three layers: these defaults, then a YAML file, then ``--set key=value`` overrides.
Every layer is validated by name: an unknown key or a value of the wrong type or range is refused with a message
that names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from .storage import write_text_atomic


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key and where it came from."""


AMP_MODES = ("none", "bf16", "fp16")
AUGMENT_ENGINES = ("fused", "torchvision")
SPLIT_KINDS = ("random", "group")
STAGES = ("head", "last_stage", "all")
HEAD_INITS = ("random", "probe")
LR_SCHEDULES = ("plateau", "cosine")
BALANCE_MODES = ("auto", "sampler", "none")
LR_PER_256_IMAGES = 1.6e-3
"""The head's learning rate for a batch of 256 when ``lr`` is not given; a batch of B gets ``B / 256`` of it
(linear scaling, Goyal et al. 2017): 2e-4 for the default batch of 32."""

class Settings:
    """What every typed config shares: built in layers (defaults, a YAML file, ``key=value`` overrides), each key
    and value checked by name, saved as YAML. A subclass is a dataclass that lists its keys and :meth:`checks`."""

    def __post_init__(self) -> None:
        self.validate()

    def checks(self) -> list[tuple[str, bool, str]]:
        """(key, whether its value is acceptable, what it must be) for each key with a rule."""
        return []

    def validate(self, source: str = "config") -> None:
        for key, ok, why in self.checks():
            if not ok:
                raise ConfigError(f"{source}: {key}={getattr(self, key)!r} {why}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config", base: Settings | None = None) -> Self:
        """A config from ``values`` laid over ``base`` (or the defaults); keys and types are checked by name."""
        merged = dataclasses.asdict(base) if base is not None else {}
        for key, value in values.items():
            merged[key] = _coerce(_field_types(cls), key, value, source)
        try:
            config = cls(**merged)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}".replace(f"{source}: config: ", f"{source}: ")) from None
        return config

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> Self:
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
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    def differences(self, other: Settings | None = None) -> dict[str, tuple[Any, Any]]:
        """Keys whose value differs from ``other`` (the defaults when omitted): key -> (mine, theirs)."""
        theirs = (other or type(self)()).to_dict()
        return {k: (v, theirs[k]) for k, v in self.to_dict().items() if v != theirs[k]}


@dataclass
class Config(Settings):
    # --- model ---
    backbone: str = "resnet101"
    """``resnet101`` (reference), ``efficientnet_lite0`` (offline default) or any timm model name."""
    weights: str = "imagenet"
    """``imagenet``, a local file path, or ``none``. ImageNet weights come from a package on disk where one
    ships them (efficientnet_lite0), else from timm's hub download (online only)."""
    init_run: str | None = None
    """A run folder whose best model this run starts from instead of ``weights`` (``simpsons train --init RUN``):
    its backbone, and the head rows of the classes it knows, matched by name and copied exactly; a new class's
    row is imprinted from its training images' features, then fitted beside the kept rows, and the run's classes
    that the data lacks are dropped
    (``training/grow.py``). ``backbone`` must be the run's. The grown head takes the place of ``head_init``
    (a probe would refit the known rows) and is scored as epoch 0, so ``best.pt`` is never worse than where
    fine-tuning started. Null: start from ``weights``."""
    image_size: int = 224

    # --- optimisation ---
    epochs: int = 25
    batch_size: int = 32
    lr: float | None = None
    """The head's peak learning rate; null: ``LR_PER_256_IMAGES * batch_size / 256``."""
    weight_decay: float = 3e-4
    label_smoothing: float = 0.03
    backbone_lr_mult: float = 0.1
    """Learning rate of everything but the head, as a multiple of ``lr``."""
    unfreeze_epoch: int = 5
    """Epochs before this one train only the head; from it on, ``unfreeze_stage`` trains too. Used when
    ``unfreeze_fraction`` is null."""
    unfreeze_fraction: float | None = 0.2
    """The unfreeze point as a fraction of the run: epoch ``floor(unfreeze_fraction * epochs)``, so the same
    config fine-tunes the last stage in a 3-epoch run (from the start) and a 25-epoch one (from epoch 5, as the
    reference). Null: ``unfreeze_epoch``."""
    unfreeze_stage: str = "last_stage"
    """What trains from ``unfreeze_epoch``: ``last_stage`` (ResNet layer4 / EfficientNet last block group),
    ``all``, or ``head`` (never unfreeze)."""
    head_init: str = "probe"
    """``probe``: before fine-tuning, fit the head as a logistic regression on the frozen backbone's features of
    the un-augmented training images (LP-FT, Kumar et al. 2022), and score that model as epoch 0, so fine-tuning
    starts from a head that already classifies and the best checkpoint is never worse than the probe. A random
    head's gradients distort the pre-trained features before it has learned anything, worst on small datasets and
    short runs. ``random``: a freshly initialised head (the reference). Not used with ``init_run``, whose grown
    head is scored as epoch 0 instead."""
    lr_schedule: str = "cosine"
    """``plateau``: ReduceLROnPlateau on the validation loss per epoch (the reference). ``cosine``: by optimiser
    steps, linear warm-up over ``warmup_fraction`` of the run then cosine decay to zero."""
    warmup_fraction: float = 0.05
    """Share of the run's steps spent warming the learning rate up (``lr_schedule: cosine``)."""
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    ema_decay: float | None = None
    """Decay of the exponential moving average of the weights; 0 turns EMA off. The EMA weights are the ones
    evaluated and saved as best. Null: the EMA averages over about a tenth of the run's steps
    (``1 - 10 / total_steps``, between 0.9 and 0.9998), so a short run is not an average of its first, worst
    weights and a long one still smooths. Early steps use a warm-up decay either way."""

    wise_alpha: float = 0.5
    """The model training leaves is a weight-space ensemble of where fine-tuning started and where it ended
    (WiSE-FT, Wortsman et al. 2022): every weight ``(1 - wise_alpha) * start + wise_alpha * fine-tuned``, with
    the start the probe head (or the head grown from ``init_run``) on the pre-trained backbone and the fine-tuned
    weights the EMA's. Fine-tuning on a few images per class distorts features that held for drawing styles the
    training images lack, and the ensemble keeps what each end does well (``benchmarks/recipes.py``: above both
    ends on the two datasets where fine-tuning alone fell below the probe, between them on the third).
    It is scored as the row after the last epoch and kept as best only if validation says so. 0.5 is the
    paper's default, not tuned here. 1: the fine-tuned weights alone (the reference); not used with
    ``head_init: random``, whose start does not classify."""

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
    outlier_exposure: float = 0.0
    """Outlier exposure (Hendrycks et al., 2019; ``augment/outliers.py``): background crops added to each training
    batch, this many per image, trained towards the uniform distribution so that confidence stays low where no
    character is. The loss weighs them ``outlier_exposure`` against the characters, so 0.5 is the paper's
    weight (with a quarter of its outlier images). Off by default: it costs the extra images' compute, and
    README's open-set section shows what it gains on two datasets."""
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
    balance: str = "auto"
    """Imbalanced classes: ``auto`` samples training images with square-root class balancing when the largest
    class has at least 3 times the images of the smallest (see ``training/sampling.py`` for why this rule),
    ``sampler`` always, ``none`` never (every image once per epoch)."""
    holdout_classes: int = 0
    """Classes (picked with ``seed``) kept out of training and validation entirely; their images go to
    ``RUN/heldout.csv`` so ``simpsons evaluate`` can measure how well unknown characters are rejected."""
    seed: int = 0

    # --- semi-supervised (FixMatch, ``training/pseudo_labels.py``) ---
    unlabeled_dir: str | None = None
    """A folder of unlabelled images (any layout, unknown characters welcome; ``simpsons train --unlabeled DIR``)
    trained on as FixMatch does (Sohn et al., 2020): each step also draws ``unlabeled_ratio`` unlabelled images
    per labelled one, pseudo-labels their weak view with the EMA model, and trains the strong view towards the
    labels it is confident of and that the run's unknown-character rule accepts. Null: labelled images only."""
    unlabeled_ratio: int = 2
    """Unlabelled images per labelled one in a step (FixMatch's mu). FixMatch uses 7 on GPUs; each unlabelled image
    costs two augmentations, a forward pass of the EMA model and a forward and backward pass of its strong view,
    so on a CPU a step with 7 is about 10 times a labelled step, with 2 about 3.5 times: 2 keeps the demo's runs
    in minutes while every step still sees twice as many unlabelled images as labelled ones."""
    pseudo_label_threshold: float | None = None
    """Softmax confidence of the weak view from which its class becomes a pseudo-label. Null: FreeMatch's
    self-adaptive bar per class, which follows the model's confidence (``training/pseudo_labels.py``); a number:
    one fixed bar, FixMatch's is 0.95. A fixed 0.95 suits long GPU runs; on a CPU budget of tens of steps the
    model rarely gets that sure and nearly every image stays pending. Images of unknown characters are kept out
    by the unknown-character rule either way, before any bar."""
    unlabeled_weight: float = 1.0
    """Weight of the unlabelled loss against the labelled one (FixMatch's lambda_u)."""

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

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("init_run", self.init_run is None or self.init_run.strip() != "", "must be a run folder or null"),
            ("image_size", self.image_size >= 16, "must be at least 16"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("lr", self.lr is None or self.lr > 0, "must be positive or null"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("backbone_lr_mult", self.backbone_lr_mult >= 0, "must be >= 0"),
            ("unfreeze_epoch", self.unfreeze_epoch >= 0, "must be >= 0"),
            ("unfreeze_fraction", self.unfreeze_fraction is None or 0 <= self.unfreeze_fraction <= 1,
             "must be in [0, 1] or null"),
            ("unfreeze_stage", self.unfreeze_stage in STAGES, f"must be one of {STAGES}"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"must be one of {LR_SCHEDULES}"),
            ("warmup_fraction", 0 <= self.warmup_fraction < 1, "must be in [0, 1)"),
            ("head_init", self.head_init in HEAD_INITS, f"must be one of {HEAD_INITS}"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "must be in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 0, "must be >= 0"),
            ("ema_decay", self.ema_decay is None or 0 <= self.ema_decay < 1, "must be in [0, 1) or null"),
            ("wise_alpha", 0 <= self.wise_alpha <= 1, "must be in [0, 1]"),
            ("strong_aug_prob", 0 <= self.strong_aug_prob <= 1, "must be in [0, 1]"),
            ("background_mix_prob", 0 <= self.background_mix_prob <= 1, "must be in [0, 1]"),
            ("mixup_alpha", self.mixup_alpha >= 0, "must be >= 0"),
            ("cutmix_alpha", self.cutmix_alpha >= 0, "must be >= 0"),
            ("mix_prob", 0 <= self.mix_prob <= 1, "must be in [0, 1]"),
            ("outlier_exposure", 0 <= self.outlier_exposure <= 4, "must be in [0, 4]"),
            ("augment_engine", self.augment_engine in AUGMENT_ENGINES, f"must be one of {AUGMENT_ENGINES}"),
            ("split", self.split in SPLIT_KINDS, f"must be one of {SPLIT_KINDS}"),
            ("val_fraction", 0 < self.val_fraction < 1, "must be in (0, 1)"),
            ("min_images_per_class", self.min_images_per_class >= 1, "must be at least 1"),
            ("balance", self.balance in BALANCE_MODES, f"must be one of {BALANCE_MODES}"),
            ("holdout_classes", self.holdout_classes >= 0, "must be >= 0"),
            ("unlabeled_dir", self.unlabeled_dir is None or self.unlabeled_dir.strip() != "",
             "must be a folder or null"),
            ("unlabeled_ratio", self.unlabeled_ratio >= 1, "must be at least 1"),
            ("pseudo_label_threshold", self.pseudo_label_threshold is None or 0 < self.pseudo_label_threshold <= 1,
             "must be in (0, 1] or null"),
            ("unlabeled_weight", self.unlabeled_weight >= 0, "must be >= 0"),
            ("amp", self.amp in AMP_MODES, f"must be one of {AMP_MODES}"),
            ("num_workers", self.num_workers is None or self.num_workers >= 0, "must be >= 0 or null"),
            ("compile", isinstance(self.compile, bool), "must be true or false"),
        ]

    # --- derived ---
    @property
    def starts_from_classifier(self) -> bool:
        """Fine-tuning starts from a head that already classifies: the probe, or the head grown from a run."""
        return self.init_run is not None or self.head_init == "probe"

    @property
    def ensembles_weights(self) -> bool:
        """The run ends with the weight-space ensemble of ``wise_alpha``."""
        return self.wise_alpha < 1 and self.starts_from_classifier

    @property
    def head_lr(self) -> float:
        """``lr``, or the batch-size-scaled default when it is null."""
        return self.lr if self.lr is not None else LR_PER_256_IMAGES * self.batch_size / 256

    def ema_decay_for(self, total_steps: int) -> float:
        """``ema_decay``, or the decay that averages over about a tenth of ``total_steps`` when it is null."""
        if self.ema_decay is not None:
            return self.ema_decay
        return min(0.9998, max(0.9, 1 - 10 / max(total_steps, 1)))


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
        try:
            values[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:  # unbalanced brackets, a !!python/object tag...
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"--set {pair!r}: the value is not a plain YAML value ({problem})") from None
    return values


@functools.cache
def _field_types(cls: type[Settings]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(field_types: dict[str, Any], key: str, value: Any, source: str) -> Any:
    if key not in field_types:
        close = difflib.get_close_matches(key, field_types, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: unknown config key {key!r}{hint}")
    expected = field_types[key]
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


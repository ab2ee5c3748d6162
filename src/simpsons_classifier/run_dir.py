"""A run folder: the one place that names the files a run holds.

Every module that reads or writes a run goes through :class:`RunDir` (``run.best``, ``run.eval_dir()``...), so the
folder's layout is written down once, here, and a newcomer can read it top to bottom:

==========================  ==================================================================================
``config.yaml``             the resolved config
``dataset.json``            classes, counts, dropped classes, where the data came from
``split.csv``               which image is training and which validation
``heldout.csv``             images of the classes kept out (``holdout_classes``), for open-set figures
``skipped.csv``             files that could not be used, and why
``unlabeled.csv``           the unlabelled images of a semi-supervised run (``unlabeled_dir``)
``unlabeled_skipped.csv``   the unlabelled folder's files that could not be used, and why
``metrics.csv``             one row per epoch; ``curves.png`` draws it
``best.pt`` / ``last.pt``   the best (EMA) weights for inference / everything a resume needs
``start.pt``                the weights fine-tuning started from, for the final weight ensemble (``wise_alpha``)
``openset.json``            the unknown-character rule (score and threshold)
``features.pt``             training images' features, which feature-based unknown-character scores fit on
``eval/``, ``eval-tta/``    evaluation files (:class:`EvalDir`)
``explain/``                explanation pictures
``export/``                 the ONNX export
``discover/``               candidate new characters among images it rejects (:class:`DiscoverDir`)
``detector/``               the multi-character detector of ``simpsons detect train`` (:class:`DetectorDir`)
``report.html``             the self-contained report
``.lock``                   held by the one process that writes the run (``run_lock.py``)
==========================  ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .storage import make_folder


class File:
    """A file of a folder object: ``folder.metrics`` is ``folder.path / "metrics.json"``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, folder, owner=None):
        return self if folder is None else folder.path / self.name


@dataclass(frozen=True)
class Folder:
    path: Path

    def make(self):
        """Create the folder (and its parents) if missing; returns the same object. A folder that cannot be made
        (no permission, full disk) is one ``StorageError`` naming it."""
        make_folder(self.path)
        return self


class EvalDir(Folder):
    """The files of one evaluation (``RUN/eval`` by default)."""

    metrics = File("metrics.json")
    per_class = File("per_class.csv")
    confusion_csv = File("confusion_matrix.csv")
    confusion_png = File("confusion_matrix.png")
    confused_pairs = File("confused_pairs.csv")
    predictions = File("predictions.csv")
    per_group = File("per_group.csv")
    skipped = File("skipped.csv")
    openset = File("openset.json")
    openset_scores = File("openset_scores.png")
    """The chosen score's histograms, known against near and far unknown images, with the threshold."""
    detection = File("detection.json")
    """The detector's scores on held-out scenes: COCO mAP, per-class AP, scene tags."""
    detection_per_class = File("detection_per_class.csv")
    detections = File("detections.png")
    """Held-out scenes with the detector's boxes and the true ones."""


class ExplainDir(Folder):
    """The explanation pictures of a run (``RUN/explain``); ``images`` holds those of files given by the user."""

    gradcam_classes = File("gradcam_classes.png")
    gradcam_files = File("gradcam.png")

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



class DiscoverDir(Folder):
    """What ``simpsons discover`` writes (``RUN/discover`` by default): the images taken as unknown characters,
    copied into one folder per cluster, the table of which image went where, and the page that shows them."""

    clusters = File("clusters.csv")
    page = File("index.html")
    skipped = File("skipped.csv")

    def cluster(self, name: str) -> Path:
        """The folder of the copies of one cluster's images."""
        return self.path / name



class DetectorDir(Folder):
    """The character detector trained into a run (``RUN/detector``); ``simpsons serve`` offers ``/detect`` when its
    weights are there."""

    config = File("config.yaml")
    metrics = File("metrics.csv")
    """One row per epoch: learning rate, the three FCOS losses, seconds."""
    best = File("best.pt")
    """The weights, classes and config inference loads."""
    last = File("last.pt")
    """Everything a resume needs."""
    rejected_boxes = File("rejected_boxes.csv")
    """The real boxes (``boxes``) training left out, and why."""
    report = File("report.html")
    """The detector's page: scores, held-out scenes with boxes, per-class AP; the run's report links it."""

    def holds_detector(self) -> bool:
        return self.best.is_file()


class RunDir(Folder):
    """A run folder; ``RunDir(path)`` names its files without touching the disk."""

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
    config = File("config.yaml")
    """The resolved config."""
    dataset = File("dataset.json")
    """Classes, counts, dropped classes, where the data came from."""
    split = File("split.csv")
    """Which image is training and which validation."""
    heldout = File("heldout.csv")
    """Images of the classes kept out (``holdout_classes``)."""
    skipped = File("skipped.csv")
    """Files that could not be used, and why."""
    unlabeled = File("unlabeled.csv")
    """The unlabelled images a semi-supervised run trains on (``unlabeled_dir``), relative to that folder."""
    unlabeled_skipped = File("unlabeled_skipped.csv")
    """The unlabelled folder's files that could not be used, and why."""
    metrics = File("metrics.csv")
    """One row per epoch (the probe or grown head first, as epoch -1)."""
    curves = File("curves.png")
    """``metrics.csv`` drawn."""
    best = File("best.pt")
    """The best (EMA) weights, classes and normalisation: what inference loads."""
    last = File("last.pt")
    """Everything a resume needs."""
    start = File("start.pt")
    """The weights fine-tuning started from (probe or grown head on the pre-trained backbone), which the run's last
    step mixes back into the fine-tuned ones (``wise_alpha``)."""

    def checkpoint(self, which: str) -> Path:
        """``best`` or ``last``."""
        if which not in ("best", "last"):
            raise ValueError(f"unknown checkpoint {which!r} (best or last)")
        return self.best if which == "best" else self.last

    lock = File(".lock")
    """Locked (``flock``) by the process that trains or finishes the run; names it (PID, host)."""

    # --- what follows training ---
    openset = File("openset.json")
    """The unknown-character rule."""
    feature_bank = File("features.pt")
    """Features of the training images, which feature-based unknown-character scores are fitted on."""
    report = File("report.html")
    """The self-contained report."""

    @property
    def explain_dir(self) -> ExplainDir:
        return ExplainDir(self.path / "explain")

    export_dir = File("export")

    @property
    def detector(self) -> DetectorDir:
        return DetectorDir(self.path / "detector")

    @property
    def discover_dir(self) -> DiscoverDir:
        return DiscoverDir(self.path / "discover")

    def eval_dir(self, tta: bool = False, data: str | Path | None = None) -> EvalDir:
        """``eval/``: the validation split's evaluation, which the report shows; ``eval-FOLDER/`` another folder's,
        so that a test set never takes its place; ``-tta`` with test-time augmentation."""
        name = "eval" + (f"-{Path(data).resolve().name}" if data is not None else "") + ("-tta" if tta else "")
        return EvalDir(self.path / name)

    # --- state ---
    def why_no_model(self) -> str | None:
        """None when the run has a model to load (``best.pt``); otherwise what is wrong, and what to run."""
        if not self.path.is_dir():
            return f"{self} is not a folder"
        if not self.best.is_file():
            return (f"{self} holds no trained model ({self.best.name} is missing): train one with  "
                    f"simpsons train --data DIR --out {self}")
        return None

    def holds_run(self) -> bool:
        """True once the first epoch has been checkpointed: the folder must be resumed, not trained into."""
        return self.last.is_file()

    def is_newer_than_best(self, path: Path) -> bool:
        """``path`` exists and was written after the current ``best.pt``."""
        return path.is_file() and path.stat().st_mtime >= self.best.stat().st_mtime


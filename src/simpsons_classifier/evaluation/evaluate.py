"""Evaluating a run's best model: on its validation split (with the open-set figures when it kept classes out),
or on another labelled folder. The logits are computed once and every figure is derived from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..data.run_data import RunData, read_heldout
from ..data.scan import Sample, Skipped, scan_dataset, write_skipped
from ..run_dir import EvalDir, RunDir
from ..storage import check_writable
from ..training import LoadedModel, load_model
from .openset import Calibration, OpenSetRule, calibrate, heldout_logits, openset_figures
from .report import write_evaluation
from .results import EvalResult, OpenSetFigures
from .robustness import pasting_transform, seeded
from .run_model import eval_transform, sample_logits
from .tta import TTAModel


def evaluate_run(
    run_dir: str | Path | RunDir,
    data_dir: str | Path | None = None,
    labels_from_filenames: bool = False,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    tta: bool = False,
    robustness: bool = False,
) -> EvalResult:
    """Evaluate ``RUN/best.pt``; results go to ``out_dir`` (default ``RUN/eval``, ``RUN/eval-tta`` with ``tta``).

    ``tta`` averages flipped and zoomed views; ``robustness`` adds ``robustness_top1``: top-1 on the same
    images pasted onto backgrounds never used in training. On the validation split of a run that kept classes
    out, the open-set figures come too (and the run's rule is calibrated first if it has none)."""
    run = RunDir(run_dir)
    out = EvalDir(Path(out_dir)) if out_dir else run.eval_dir(tta)
    check_writable(out.make().path)  # a full disk or a read-only folder: refused now, not after the model has run
    loaded = load_model(run)
    skipped: list[Skipped] = []
    if data_dir is None:
        samples = RunData.read(run).split.val
    else:
        scan = scan_dataset(data_dir, labels_from_filenames=labels_from_filenames, progress=progress)
        known = set(loaded.classes)
        samples = [s for s in scan.samples if s.label in known]
        skipped = scan.skipped + [Skipped(s.path, f"class {s.label!r} is not one the model knows")
                                  for s in scan.samples if s.label not in known]
    if not samples:
        raise ValueError(f"nothing to evaluate: no image of a class the model knows ({len(skipped)} skipped)")
    wrap = TTAModel if tta else None
    logits, targets = sample_logits(loaded, samples, wrap=wrap, batch_size=batch_size, progress=progress,
                                    desc="evaluating")
    openset = None
    if data_dir is None and not tta:  # open-set figures are those of the plain model, as it is served
        openset = validation_openset(run, loaded, logits, progress)[1]
    return evaluate_logits(loaded, samples, logits, targets, out, openset=openset, wrap=wrap,
                           robustness=robustness, skipped=skipped, progress=progress)


def validation_openset(
    run: RunDir, loaded: LoadedModel, known_logits: torch.Tensor, progress: bool = True, recalibrate: bool = False
) -> tuple[Calibration | None, OpenSetFigures | None]:
    """The unknown-character rule and its figures from the validation logits and one pass over the held-out
    classes' images (when the run kept some out). The rule is calibrated and stored in ``RUN/openset.json`` when
    ``recalibrate`` or when the run has none; the figures are None without held-out images."""
    heldout = read_heldout(run)
    unknown_logits = heldout_logits(loaded, heldout, progress) if heldout else None
    calibration, rule = None, OpenSetRule.read(run.openset)
    if recalibrate or rule is None:
        calibration = calibrate(known_logits, unknown_logits)
        calibration.write(run.openset)
        rule = calibration.rule
    figures = openset_figures(rule, known_logits, unknown_logits, heldout) if heldout else None
    return calibration, figures


def evaluate_logits(
    loaded: LoadedModel,
    samples: list[Sample],
    logits: torch.Tensor,
    targets: torch.Tensor,
    out: EvalDir,
    openset: OpenSetFigures | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    robustness: bool = False,
    skipped: list[Skipped] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Every figure of an evaluation from the ``logits`` of ``samples``, written to ``out`` (with ``robustness``,
    after one more pass over the images on unseen backgrounds)."""
    extra: dict = {"num_skipped": len(skipped or []), "tta": wrap is not None}
    if robustness:
        seeded()
        pasted_logits, _ = sample_logits(loaded, samples, pasting_transform(eval_transform(loaded)), wrap,
                                         progress=progress, desc="robustness")
        extra["robustness_top1"] = float((pasted_logits.argmax(1) == targets).float().mean())
    if openset is not None:
        openset.write(out.make().openset)
        extra["openset"] = openset
    if skipped:
        write_skipped(out.make().skipped, skipped)
    return write_evaluation(logits, targets, loaded.classes, out, paths=[s.path for s in samples], **extra)


def ensure_evaluated(run_dir: str | Path | RunDir) -> EvalDir:
    """``RUN/eval`` of the current ``best.pt``: evaluated again when missing or older than the checkpoint."""
    run = RunDir(run_dir)
    out = run.eval_dir()
    if not run.is_newer_than_best(out.predictions):
        evaluate_run(run, progress=False)
    return out

"""Evaluating a run's best model: on its validation split (with the open-set figures when it kept classes out),
or on another labelled folder. The logits are computed once and every figure is derived from them."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import Config
from ..data.run_data import RunData, read_heldout
from ..data.split import source_group
from ..data.scan import Sample, Skipped, scan_dataset, write_skipped
from ..run_dir import EvalDir, RunDir
from ..storage import check_writable
from ..training import LoadedModel, load_model
from .far_ood import far_ood_sets, far_selection_set, folder_set
from .ood_scores import BANK_MAX_IMAGES, FeatureBank, fit_scores
from .openset import (Calibration, OpenSetDetector, OpenSetRule, calibrate, openset_figures, split_heldout_classes,
                      subset)
from .report import plot_openset_scores, write_evaluation
from .results import EvalResult, OpenSetFigures
from .robustness import pasting_transform, seeded
from .run_model import ModelOutputs, eval_transform, sample_logits, sample_outputs
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
    far_dirs: list[str | Path] = (),
    recalibrate: bool = False,
) -> EvalResult:
    """Evaluate ``RUN/best.pt``; results go to ``out_dir`` (default :meth:`RunDir.eval_dir`: ``RUN/eval``, or
    ``RUN/eval-FOLDER`` for ``data_dir``, with ``-tta`` for ``tta``).

    ``tta`` averages flipped and zoomed views; ``robustness`` adds ``robustness_top1``: top-1 on the same
    images pasted onto backgrounds never used in training. On the validation split of a run that kept classes
    out, the open-set figures come too, against its held-out classes and far-away images (built-in photos and
    noise, plus the folders ``far_dirs``); the run's rule is calibrated first if it has none, or with
    ``recalibrate`` (a run kept from before a change to the scores or to how one is chosen)."""
    if recalibrate and (data_dir is not None or tta):
        raise ValueError("recalibrating chooses the unknown-character rule on the run's own validation split, as "
                         "the model is served: not with other data or test-time augmentation")
    run = RunDir(run_dir)
    out = EvalDir(Path(out_dir)) if out_dir else run.eval_dir(tta, data_dir)
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
    if tta:
        logits, targets = sample_logits(loaded, samples, wrap=TTAModel, batch_size=batch_size, progress=progress,
                                        desc="evaluating")
        return evaluate_logits(loaded, samples, logits, targets, out, wrap=TTAModel, robustness=robustness,
                               skipped=skipped, progress=progress)
    outputs = sample_outputs(loaded, samples, batch_size=batch_size, progress=progress, desc="evaluating")
    openset = None
    if data_dir is None:  # open-set figures are those of the plain model, as it is served
        openset = validation_openset(run, loaded, outputs, progress, recalibrate, far_dirs)
    return evaluate_logits(loaded, samples, outputs.logits, outputs.targets, out, openset=openset,
                           robustness=robustness, skipped=skipped, progress=progress)


@dataclass(frozen=True)
class OpenSetEvaluation:
    calibration: Calibration | None
    """The rule calibrated now (None when the run's stored rule was kept)."""
    figures: OpenSetFigures | None
    """None when the run kept no classes out: nothing unknown to measure against."""
    score_values: dict[str, list[float]]
    """The chosen score of known, near and far images, for the histograms."""


def validation_openset(
    run: RunDir, loaded: LoadedModel, known: ModelOutputs, progress: bool = True, recalibrate: bool = False,
    far_dirs: list[str | Path] = (),
) -> OpenSetEvaluation:
    """The unknown-character rule and its figures from the validation outputs, the run's feature bank (computed
    when missing), and one pass over the held-out classes' images and the far-away sets (when the run kept
    classes out). The rule is calibrated on the selection half of the held-out classes and stored in
    ``RUN/openset.json`` when ``recalibrate`` or when the run has none; the figures come from the other half."""
    bank = ensure_feature_bank(run, loaded, progress)
    heldout = like_validation(read_heldout(run), RunData.read(run).split.val, loaded.config)
    selection_classes, report_classes = split_heldout_classes(sorted({s.label for s in heldout}),
                                                              loaded.config.seed)
    unknown = sample_outputs(loaded, heldout, progress=progress, desc="held-out classes")
    scores = fit_scores(bank)  # fitted once: the calibration, the rule and the figures share them
    calibration, rule = None, OpenSetRule.read(run.openset)
    if recalibrate or rule is None:
        selection_far = (sample_outputs(loaded, far_selection_set(), progress=progress, desc="far-away: selection")
                         if selection_classes else None)
        calibration = calibrate(known, scores, subset(unknown, heldout, selection_classes), selection_classes,
                                selection_far)
        calibration.write(run.openset)
        rule = calibration.rule
    detector = OpenSetDetector(rule, bank, scores[rule.score])
    if not heldout:
        return OpenSetEvaluation(calibration, None, {})
    near = subset(unknown, heldout, report_classes)
    far_samples = far_ood_sets() | {Path(d).name: folder_set(d) for d in far_dirs}
    far = {name: sample_outputs(loaded, samples, progress=progress, desc=f"far-away: {name}")
           for name, samples in far_samples.items()}
    values = {name: detector.scores(o.features, o.logits).tolist()
              for name, o in (("known", known), ("near", near), ("far", ModelOutputs.concat(list(far.values()))))}
    return OpenSetEvaluation(calibration, openset_figures(detector, scores, known, near, report_classes, far), values)


def like_validation(heldout: list[Sample], val: list[Sample], config: Config) -> list[Sample]:
    """The held-out characters' images drawn in the sources the known validation images come from. With a group
    split those are sources never trained on, and held-out characters in the training sources would measure the
    change of style, not of character; a random split keeps every image."""
    if config.split != "group":
        return heldout
    sources = {source_group(s.path) for s in val}
    return [s for s in heldout if source_group(s.path) in sources] or heldout


def stratified_sample(samples: list[Sample], size: int, seed: int = 0) -> list[Sample]:
    """About ``size`` of ``samples`` (in their order), each class in proportion and by at least one image, so
    that no rare character is missing from the nearest-neighbour scores."""
    rng, share = random.Random(seed), size / len(samples)
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        by_class[sample.label].append(index)
    kept = [i for indices in by_class.values() for i in rng.sample(indices, max(1, round(len(indices) * share)))]
    return [samples[i] for i in sorted(kept)]


def ensure_feature_bank(run: RunDir, loaded: LoadedModel, progress: bool = True) -> FeatureBank:
    """The run's feature bank as stored, computed from (a stratified sample of) its training images when missing
    or older than ``best.pt``."""
    if run.is_newer_than_best(run.feature_bank):
        return FeatureBank.read(run.feature_bank)
    train = RunData.read(run).split.train
    if len(train) > BANK_MAX_IMAGES:
        train = stratified_sample(train, BANK_MAX_IMAGES)
    outputs = sample_outputs(loaded, train, progress=progress, desc="training features")
    classifier = loaded.model.get_classifier()
    bank = FeatureBank(outputs.features, outputs.targets, list(loaded.classes),
                       classifier.weight.detach().clone(), classifier.bias.detach().clone())
    bank.write(run.feature_bank)
    return FeatureBank.read(run.feature_bank)  # as stored (float16), so a later call gives the same figures


def evaluate_logits(
    loaded: LoadedModel,
    samples: list[Sample],
    logits: torch.Tensor,
    targets: torch.Tensor,
    out: EvalDir,
    openset: OpenSetEvaluation | None = None,
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
    if openset is not None and openset.figures is not None:
        openset.figures.write(out.make().openset)
        plot_openset_scores(openset.score_values, openset.figures, out.openset_scores)
        extra["openset"] = openset.figures
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

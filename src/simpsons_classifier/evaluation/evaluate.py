"""``simpsons evaluate``: a run's best model on its validation split, or on another labelled folder."""

from __future__ import annotations

from pathlib import Path

from ..data.run_data import RunData
from ..data.scan import Skipped, scan_dataset, write_skipped
from ..training import load_model
from .openset import openset_report
from .report import write_report
from .robustness import pasting_transform, seeded
from .run_model import eval_transform, sample_logits
from .tta import TTAModel


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    labels_from_filenames: bool = False,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    tta: bool = False,
    robustness: bool = False,
) -> dict:
    """Evaluate ``RUN/best.pt``; results go to ``out_dir`` (default ``RUN/eval``, ``RUN/eval-tta`` with ``tta``).

    ``tta`` averages flipped and zoomed views; ``robustness`` adds ``robustness_top1``: top-1 on the same
    images pasted onto backgrounds never used in training."""
    run_dir = Path(run_dir)
    loaded = load_model(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / ("eval-tta" if tta else "eval")
    skipped: list[Skipped] = []
    if data_dir is None:
        samples = RunData.read(run_dir).split.val
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
    extra = {"num_skipped": len(skipped), "tta": tta}
    if robustness:
        seeded()
        pasted_logits, _ = sample_logits(loaded, samples, pasting_transform(eval_transform(loaded)), wrap,
                                         batch_size, progress, "robustness")
        extra["robustness_top1"] = float((pasted_logits.argmax(1) == targets).float().mean())
    if data_dir is None and (openset := openset_report(run_dir, out_dir, progress)) is not None:
        extra["openset"] = openset
    out_dir.mkdir(parents=True, exist_ok=True)
    if skipped:
        write_skipped(out_dir / "skipped.csv", skipped)
    return write_report(logits, targets, loaded.classes, out_dir, extra=extra, paths=[s.path for s in samples])

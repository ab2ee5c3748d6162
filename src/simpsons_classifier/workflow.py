"""Everything that follows training, in one place: ``simpsons train``, ``--resume`` and ``simpsons ablate``
all end with :func:`finish_run`.

The best checkpoint's validation outputs are computed once; the unknown-character rule is calibrated on them
(with the features of the training images), the evaluation (with the robustness score on unseen backgrounds and,
when classes were kept out, the open-set figures) is derived from them, and the report is written last.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .data.run_data import RunData
from .evaluation.evaluate import evaluate_logits, validation_openset
from .evaluation.openset import Calibration
from .evaluation.results import EvalResult
from .evaluation.run_model import sample_outputs
from .report import build_report
from .run_dir import RunDir
from .training import load_model
from .training.distributed import is_main_process
from .run_lock import hold_run


@dataclass(frozen=True)
class FinishedRun:
    run: RunDir
    calibration: Calibration
    evaluation: EvalResult
    report: Path


def finish_run(run_dir: str | Path | RunDir, progress: bool = True) -> FinishedRun | None:
    """Calibrate, evaluate and report the run's best model, holding the run's lock; None in every process but the
    first of a distributed run (which does it for all)."""
    if not is_main_process():
        return None
    run = RunDir(run_dir)
    with hold_run(run):
        loaded = load_model(run)
        data = RunData.read(run)
        data.check_root()
        samples = data.split.val
        outputs = sample_outputs(loaded, samples, progress=progress, desc="evaluating")
        openset = validation_openset(run, loaded, outputs, progress, recalibrate=True)
        evaluation = evaluate_logits(loaded, samples, outputs.logits, outputs.targets, run.eval_dir(),
                                     openset=openset, robustness=True, progress=progress)
        return FinishedRun(run, openset.calibration, evaluation, build_report(run))

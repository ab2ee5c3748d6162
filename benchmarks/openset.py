"""How reliably are unknown characters rejected, over several draws of the characters held out?

    python benchmarks/openset.py --data data/standin --out runs/openset [--seeds 0 1 2 3] [--holdout 10]
        [--set outlier_exposure=1.0 ...] [--far DIR ...] [--recalibrate]

One run per seed of the held-out-characters protocol: the demo's recipe (``configs/demo.yaml``) on a random split
with ``holdout_classes`` characters kept out, the seed drawing which ones (and the split and training). Each run's
evaluation chooses the unknown-character score on half of its held-out characters and reports the other half
(``evaluation/openset.py``). Printed: per seed, the report half's characters, the chosen score, top-1 and the
chosen score's near (held-out characters) and far (photos, noise) AUROC and FPR at 95 % TPR; then, per candidate
score, its figures averaged over the seeds. One draw of 5 reported characters (about 85 images) moves these
figures by tens of points, so only the average says much about a recipe. ``--set`` adds config overrides (e.g.
``outlier_exposure=1.0``); use another ``--out`` for each recipe compared. Runs are cached in ``--out`` and a
cached run whose config differs is refused. ``--far DIR`` (another cartoon set, e.g. ``data/recipes/emoji``)
evaluates each run again with that folder among the far-away sets, as ``simpsons evaluate --far`` does (the
stored rule is kept; into ``RUN/eval-far``), and prints the chosen score's far figures per set. ``--recalibrate``
chooses each cached run's score and threshold again and evaluates it again (after the scores or the rule that
chooses among them changed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from simpsons_classifier.config import Config
from simpsons_classifier.evaluation import evaluate_run
from simpsons_classifier.evaluation.results import EvalResult, OpenSetFigures, Separation
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import train
from simpsons_classifier.workflow import finish_run

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def evaluated_run(config: Config, data: Path, out: Path, far_dirs: list[Path],
                  recalibrate: bool = False) -> EvalResult:
    """The evaluation of the run in ``out``, trained and evaluated now unless that was done before (or calibrated
    and evaluated again with ``recalibrate``); evaluated again with ``far_dirs`` among the far-away sets when there
    are any (``RUN/eval`` stays as training left it)."""
    run = RunDir(out)
    metrics = run.eval_dir().metrics
    if run.config.is_file():
        if Config.load(run.config) != config:
            raise SystemExit(f"{out} holds a run with another config: remove it or choose another --out")
        if not metrics.is_file():
            raise SystemExit(f"{out} holds an unfinished run: simpsons train --resume {out}, then run this again")
        if recalibrate:
            finish_run(out, progress=False)
    else:
        train(config, data, out)
        finish_run(out)
    if far_dirs:
        return evaluate_run(out, out_dir=out / "eval-far", far_dirs=far_dirs, progress=False)
    return EvalResult.read(metrics)


def figures(separation: Separation) -> str:
    return f"{separation.auroc:.3f} / {separation.fpr_at_95_tpr:.3f}"


def mean(separations: list[Separation]) -> Separation:
    return Separation(float(np.mean([s.auroc for s in separations])),
                      float(np.mean([s.fpr_at_95_tpr for s in separations])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/standin", type=Path)
    parser.add_argument("--out", default="runs/openset", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--holdout", type=int, default=10, help="characters kept out of each run (default 10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--far", dest="far_dirs", action="append", default=[], type=Path, metavar="DIR")
    parser.add_argument("--recalibrate", action="store_true", help="choose the cached runs' scores again")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is missing: simpsons data standin --out {args.data} --classes 50")

    runs: list[OpenSetFigures] = []
    print(f"{'seed':>4}  {'reported characters':<66} {'top-1':>6}  {'chosen':<11} {'near AUROC / FPR95':>18}  "
          f"{'far AUROC / FPR95':>17}")
    for seed in args.seeds:
        overrides = ["split=random", f"holdout_classes={args.holdout}", f"seed={seed}", *args.overrides]
        config = Config.load(DEMO_CONFIG, overrides)
        evaluation = evaluated_run(config, args.data, args.out / f"seed{seed}", args.far_dirs, args.recalibrate)
        openset = evaluation.openset
        runs.append(openset)
        print(f"{seed:>4}  {', '.join(openset.near_classes):<66} {100 * evaluation.top1:>5.1f}%  "
              f"{openset.chosen:<11} {figures(openset.near[openset.chosen]):>18}  "
              f"{figures(openset.far[openset.chosen]):>17}")

    print(f"\nmean over {len(runs)} seeds (chosen: {', '.join(openset.chosen for openset in runs)})")
    print(f"  {'score':<12} {'near AUROC / FPR95':>18}  {'far AUROC / FPR95':>17}")
    for score in runs[0].near:
        print(f"  {score:<12} {figures(mean([o.near[score] for o in runs])):>18}  "
              f"{figures(mean([o.far[score] for o in runs])):>17}")
    print(f"  {'the chosen':<12} {figures(mean([o.near[o.chosen] for o in runs])):>18}  "
          f"{figures(mean([o.far[o.chosen] for o in runs])):>17}")
    print("\nthe chosen score's far AUROC / FPR95 by set: " + ", ".join(
        f"{name} ({runs[0].far_images[name]} images) {figures(mean([o.far_by_set[name][o.chosen] for o in runs]))}"
        for name in runs[0].far_by_set))


if __name__ == "__main__":
    main()

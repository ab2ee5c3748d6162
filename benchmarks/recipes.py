"""Training recipes side by side on more than one real dataset: same split, same backbone, equal epochs.

    python benchmarks/recipes.py --datasets standin,emoji,fonts --epochs N [--recipes probe,fastai,reference,defaults]
        [--batch-size B] [--out runs/recipes] [--data-root data/recipes] [--json FILE] [--budget-check]
        [--classes K]

The toolkit's defaults must be good on any folder a user brings, not only on the stand-in. For each dataset
(``benchmarks/datasets.py``, built on first use) the split is made once by the toolkit, holding whole sources
out (``split: group`` and the dataset's ``val_groups``), and every recipe reads that split.csv:

- ``probe``: logistic regression on frozen ImageNet EfficientNet-Lite0 features (``linear_probe.py``): the floor.
- ``fastai``: fastai's standard recipe, ``vision_learner`` on the same EfficientNet-Lite0 ImageNet weights,
  ``aug_transforms()``, ``fine_tune(N - 1, freeze_epochs=1)`` (``fastai_fine_tune.py``, run in its own
  virtual environment under the cache folder so that the toolkit's environment is untouched), in the memory
  format the toolkit trains in (channels-last by default, through fastai's ``to_channelslast``), so that the
  times compare recipes rather than memory layouts.
- ``reference``: ``configs/reference.yaml`` (the report's recipe) with ``backbone=efficientnet_lite0``.
- ``defaults``: ``Config()`` as it is, with only ``backbone=efficientnet_lite0``, ``epochs=N`` and the split.

The image size is the toolkit's default; ``--batch-size`` (default: the toolkit's) applies to fastai and the
reference, while ``defaults`` keeps its own. Top-1 is that of the model as training leaves it (for the toolkit,
the last epoch's EMA weights, or for the defaults their weight ensemble with the start, ``wise_alpha``), on all
held-out images and per held-out source; the toolkit's kept checkpoint (best.pt) is picked on those same images,
so its top-1 is shown apart as ``best-epoch``, not compared. Wall time runs from the start of a recipe to its trained model, per-epoch
validation included, final evaluation excluded.

Each recipe's outcome is kept in ``OUT/DATASET/RECIPE/outcome.json``; a rerun skips what is done with the same
settings (for the toolkit, the whole resolved config: changed defaults run again), and starts an unfinished
recipe over (its time must be one uninterrupted run).
``--budget-check`` exits 1 when the defaults take longer than ``--max-time-ratio`` × fastai's time on any dataset.
``--classes K`` keeps only the first K classes of each dataset (built and run in their own folders): a quick
check that the harness works, not a benchmark.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from datasets import DATASETS, BenchDataset, DatasetBuildError, build
from fastai_fine_tune import FASTAI, PREDICTIONS, TIMING, FastaiUnavailable, bench_python
from linear_probe import linear_probe
from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import RunData, prepare_run_data
from simpsons_classifier.data.standin import default_cache_dir
from simpsons_classifier.evaluation.report import per_group_accuracy
from simpsons_classifier.evaluation.run_model import sample_logits
from simpsons_classifier.models import create_model, data_config
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import LoadedModel, checkpoint, train
from simpsons_classifier.training.curves import read_metrics

BENCHMARKS = Path(__file__).resolve().parent
REFERENCE_CONFIG = BENCHMARKS.parent / "configs" / "reference.yaml"
FASTAI_SCRIPT = BENCHMARKS / "fastai_fine_tune.py"
BACKBONE = "efficientnet_lite0"
RECIPES = ("probe", "fastai", "reference", "defaults")
OUTCOME = "outcome.json"
SPLIT_DIR = "split"


@dataclass
class Outcome:
    dataset: str
    recipe: str
    top1: float
    """Of the trained model on all held-out images."""
    held_out_top1: dict[str, tuple[int, float]]
    """Held-out source -> (images, top-1)."""
    seconds: float
    train_images: int
    val_images: int
    epochs: int | None = None
    batch_size: int | None = None
    best_epoch_top1: float | None = None
    """The toolkit's best.pt, picked on the held-out images themselves."""
    settings: dict = field(default_factory=dict)
    """What the recipe ran with (a toolkit run's whole config): a rerun with other settings is not skipped."""

    def save(self, path: Path) -> None:
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(asdict(self), indent=2))
        os.replace(partial, path)


@dataclass
class Job:
    """One dataset's runs: where its images, its split and each recipe's run go, and the shared budget."""

    name: str
    """The dataset's name in tables (with ``-Kclasses`` when cut down)."""
    dataset: BenchDataset
    data_dir: Path
    out: Path
    epochs: int
    batch_size: int
    image_size: int
    progress: bool
    data: RunData = field(init=False)

    @property
    def split_dir(self) -> Path:
        return self.out / SPLIT_DIR

    def run_dir(self, recipe: str) -> Path:
        return self.out / recipe

    def outcome(self, recipe: str, paths: list[str], correct: np.ndarray, seconds: float, **extra) -> Outcome:
        return Outcome(self.name, recipe, float(np.mean(correct)), per_group_accuracy(paths, correct), seconds,
                       len(self.data.split.train), len(self.data.split.val), **extra)


def make_split(job: Job) -> RunData:
    """The toolkit's split of the dataset, made once into ``OUT/DATASET/split`` (split.csv, dataset.json)."""
    config = Config.load(None, job.dataset.split_overrides())
    if not RunDir(job.split_dir).dataset.is_file():  # written last
        job.split_dir.mkdir(parents=True, exist_ok=True)
        prepare_run_data(config, job.data_dir, job.split_dir, progress=job.progress)
    return RunData.read(job.split_dir)


def run_probe(job: Job) -> Outcome:
    started = time.perf_counter()
    top5, val_y = linear_probe(job.data, BACKBONE, job.image_size, job.progress)
    seconds = time.perf_counter() - started
    return job.outcome("probe", [s.path for s in job.data.split.val], top5[:, 0] == val_y, seconds,
                       settings=probe_settings(job))


def probe_settings(job: Job) -> dict:
    return {"backbone": BACKBONE, "image_size": job.image_size}


def fastai_settings(job: Job) -> dict:
    return {"backbone": BACKBONE, "epochs": job.epochs, "batch_size": job.batch_size, "image_size": job.image_size,
            "channels_last": Config().channels_last, "package": FASTAI}


def run_fastai(job: Job) -> Outcome:
    python = bench_python(default_cache_dir() / "bench-venv")
    run_dir = job.run_dir("fastai")
    settings = fastai_settings(job)
    result = subprocess.run(
        [python, FASTAI_SCRIPT, "--split-dir", job.split_dir, "--out", run_dir, "--epochs", str(job.epochs),
         "--batch-size", str(job.batch_size), "--image-size", str(job.image_size), "--backbone", BACKBONE,
         *(["--channels-last"] if settings["channels_last"] else [])],
    )
    if result.returncode != 0:
        raise SystemExit(f"error: {FASTAI_SCRIPT.name} failed with exit status {result.returncode} (output above)")
    with open(run_dir / PREDICTIONS, newline="") as handle:
        rows = list(csv.DictReader(handle))
    timing = json.loads((run_dir / TIMING).read_text())
    return job.outcome("fastai", [r["path"] for r in rows], np.array([r["true"] == r["predicted"] for r in rows]),
                       timing["seconds"], epochs=job.epochs, batch_size=job.batch_size, settings=settings)


def run_toolkit(job: Job, recipe: str, config: Config) -> Outcome:
    run_dir = job.run_dir(recipe)
    started = time.perf_counter()
    train(config, job.data_dir, run_dir, progress=job.progress, split_file=RunDir(job.split_dir).split)
    seconds = time.perf_counter() - started
    logits, targets = sample_logits(final_model(run_dir), job.data.split.val, progress=job.progress)
    return job.outcome(recipe, [s.path for s in job.data.split.val], (logits.argmax(1) == targets).numpy(), seconds,
                       epochs=config.epochs, batch_size=config.batch_size,
                       best_epoch_top1=max(row["val_top1"] for row in read_metrics(RunDir(run_dir).metrics)),
                       settings=config.to_dict())


def final_model(run_dir: Path) -> LoadedModel:
    """The model as training left it: the evaluated weights of ``last.pt`` (the last epoch's EMA weights, or their
    final weight ensemble with the start when the run makes one), or the plain weights when EMA is off."""
    config = Config.load(RunDir(run_dir).config)
    state = checkpoint.read(RunDir(run_dir).last)
    classes = RunData.read(run_dir).classes
    model = create_model(config.backbone, len(classes), "none")
    model.load_state_dict(state["ema"] if state["ema"] is not None else state["model"])
    norm = data_config(model)
    return LoadedModel(model.eval(), classes, config, norm["mean"], norm["std"])


def toolkit_config(job: Job, recipe: str) -> Config:
    common = [f"backbone={BACKBONE}", f"epochs={job.epochs}", *job.dataset.split_overrides()]
    if recipe == "reference":
        return Config.load(REFERENCE_CONFIG, [*common, f"batch_size={job.batch_size}"])
    return Config.load(None, common)


def recipe_settings(job: Job, recipe: str) -> dict:
    if recipe == "probe":
        return probe_settings(job)
    if recipe == "fastai":
        return fastai_settings(job)
    return toolkit_config(job, recipe).to_dict()


def run_recipe(job: Job, recipe: str) -> Outcome:
    """The recipe's outcome, from an earlier run with the same settings when there is one."""
    run_dir = job.run_dir(recipe)
    settings = recipe_settings(job, recipe)
    if (run_dir / OUTCOME).is_file():
        done = Outcome(**json.loads((run_dir / OUTCOME).read_text()))
        if done.settings == settings:
            print(f"{job.name} / {recipe}: done earlier ({run_dir / OUTCOME})", flush=True)
            return done
    if run_dir.exists():  # unfinished, or other settings: its time must be one uninterrupted run
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    print(f"\n== {job.name} / {recipe} ==", flush=True)
    if recipe == "probe":
        outcome = run_probe(job)
    elif recipe == "fastai":
        outcome = run_fastai(job)
    else:
        outcome = run_toolkit(job, recipe, Config.from_dict(settings))
    outcome.save(run_dir / OUTCOME)
    return outcome


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def table(outcomes: list[Outcome]) -> str:
    lines = ["| dataset | recipe | epochs | batch | train / held-out images | top-1 | top-1 per held-out source "
             "| best-epoch top-1 (picked on the held-out images) | wall time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        groups = ", ".join(f"{group} {100 * top1:.1f} %" for group, (_, top1) in sorted(o.held_out_top1.items()))
        best = f"{100 * o.best_epoch_top1:.1f} %" if o.best_epoch_top1 is not None else ""
        lines.append(f"| {o.dataset} | {o.recipe} | {o.epochs or ''} | {o.batch_size or ''} | "
                     f"{o.train_images} / {o.val_images} | **{100 * o.top1:.1f} %** | {groups} | {best} | "
                     f"{duration(o.seconds)} |")
    return "\n".join(lines)


def time_ratios(outcomes: list[Outcome]) -> dict[str, float]:
    """Dataset -> the defaults' wall time / fastai's."""
    seconds = {(o.dataset, o.recipe): o.seconds for o in outcomes}
    return {dataset: seconds[dataset, "defaults"] / seconds[dataset, "fastai"]
            for dataset, recipe in seconds if recipe == "defaults" and (dataset, "fastai") in seconds}


def names(text: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise SystemExit(f"error: --{what} {text!r}: choose from {', '.join(known)}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="standin,emoji,fonts", help=f"comma-separated: {', '.join(DATASETS)}")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated: {', '.join(RECIPES)}")
    parser.add_argument("--epochs", type=int, required=True, help="for every trained recipe (at least 2)")
    parser.add_argument("--batch-size", type=int, default=Config().batch_size,
                        help="for fastai and the reference (default: the toolkit's default)")
    parser.add_argument("--out", default="runs/recipes")
    parser.add_argument("--data-root", default="data/recipes", help="where the datasets are built")
    parser.add_argument("--json", help="also write the outcomes to this file")
    parser.add_argument("--budget-check", action="store_true",
                        help="exit 1 when the defaults take longer than --max-time-ratio × fastai's time")
    parser.add_argument("--max-time-ratio", type=float, default=1.0)
    parser.add_argument("--classes", type=int, help="only the first K classes of each dataset (a quick check)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (fastai's fine_tune: one frozen epoch, then the rest)")
    recipes = names(args.recipes, RECIPES, "recipes")
    progress = sys.stderr.isatty()

    outcomes, unavailable = [], {}
    for name in names(args.datasets, list(DATASETS), "datasets"):
        folder = name if args.classes is None else f"{name}-{args.classes}classes"
        try:
            images = build(name, Path(args.data_root) / folder, progress=progress, classes=args.classes)
        except DatasetBuildError as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            return 1
        job = Job(folder, DATASETS[name], Path(args.data_root) / folder, Path(args.out) / folder, args.epochs,
                  args.batch_size, Config().image_size, progress)
        job.data = make_split(job)
        print(f"{folder}: {images} images, {len(job.data.classes)} classes, {len(job.data.split.train)} train / "
              f"{len(job.data.split.val)} held out ({', '.join(job.dataset.held_out)})", flush=True)
        for recipe in recipes:
            try:
                outcomes.append(run_recipe(job, recipe))
            except FastaiUnavailable as error:
                unavailable[recipe] = str(error)
                print(f"fastai is not compared: {error}", file=sys.stderr)

    ratios = time_ratios(outcomes)
    print(f"\n{table(outcomes)}\n")
    for dataset, ratio in ratios.items():
        print(f"{dataset}: the defaults' wall time is {ratio:.2f}× fastai's fine_tune")
    for recipe, reason in unavailable.items():
        print(f"{recipe}: not run ({reason.splitlines()[0]})")
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"{'CUDA' if torch.cuda.is_available() else 'no GPU'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "epochs": args.epochs, "batch_size": args.batch_size, "image_size": Config().image_size,
            "outcomes": [asdict(o) for o in outcomes], "defaults_to_fastai_time": ratios, "unavailable": unavailable,
            "cpus": os.cpu_count(), "torch": torch.__version__,
        }, indent=2))
    if args.budget_check:
        over = {dataset: ratio for dataset, ratio in ratios.items() if ratio > args.max_time_ratio}
        if over or "fastai" in unavailable or not ratios:
            where = ", ".join(f"{dataset} ({ratio:.2f}×)" for dataset, ratio in over.items()) or "none (no fastai run)"
            print(f"budget check failed: the defaults take more than {args.max_time_ratio}× fastai's time on {where}",
                  file=sys.stderr)
            return 1
        print(f"budget check passed: the defaults take at most {args.max_time_ratio}× fastai's time")
    return 0


if __name__ == "__main__":
    sys.exit(main())

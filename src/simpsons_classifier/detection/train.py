"""``simpsons detect train``: a detector trained on scenes composed from a classification dataset.

Training scenes are composed from the training images on part of the background pool; the held-out scenes that
evaluation scores come from the validation images on the rest of it, so neither a character picture nor a
background of a held-out scene was ever seen in training. Into a folder that holds a trained classifier, the
detector keeps the classifier's split and starts from its backbone; into a new folder, the data is split as the
classifier would split it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm import tqdm

from ..augment.background import load_backgrounds
from ..config import Config
from ..data.run_data import RunData, prepare_run_data
from ..errors import UserError
from ..models import create_model
from ..run_dir import DetectorDir, RunDir
from ..storage import check_writable
from ..tables import read_rows, write_rows
from ..training import checkpoint
from ..training.distributed import loader_workers
from ..training.schedule import WarmupCosineSchedule
from .annotations import Annotations, RealScenes, Rejected, read_boxes, real_scenes
from .config import DetectConfig
from .model import create_detector, set_training
from .scenes import SceneComposer, SceneDataset, SceneRecipe, collate_scenes, split_backgrounds

METRIC_COLUMNS = ("epoch", "lr", "loss", "classification", "bbox_regression", "bbox_ctrness", "naming", "seconds")
MAX_REJECTED_SHOWN = 10
VAL_SEED_OFFSET = 1_000_003
"""Held-out scenes draw from their own random stream, never one a training scene used."""


@dataclass
class SceneSets:
    """The two scene sources of a detector run, each on its own images and backgrounds."""

    classes: list[str]
    train: SceneComposer
    held_out: SceneComposer


def scene_sets(config: DetectConfig, data: RunData) -> SceneSets:
    pool = load_backgrounds(config.background_dir, size_hint=config.scene_size)
    train_backgrounds, held_out_backgrounds = split_backgrounds(pool, config.held_out_backgrounds, config.seed)
    recipe = SceneRecipe(size=config.scene_size, max_characters=config.max_characters)

    def composer(samples, backgrounds, seed: int) -> SceneComposer:
        return SceneComposer([(s.path, data.classes.index(s.label)) for s in samples], backgrounds, recipe, seed)

    return SceneSets(data.classes, composer(data.split.train, train_backgrounds, config.seed),
                     composer(data.split.val, held_out_backgrounds, config.seed + VAL_SEED_OFFSET))


def held_out_scenes(config: DetectConfig, sets: SceneSets) -> SceneDataset:
    return SceneDataset(sets.held_out, config.val_scenes)


def train_detector(config: DetectConfig, data_dir: str | Path, run_dir: str | Path, progress: bool = True) -> RunDir:
    """Train a detector into ``run_dir``'s ``detector/`` folder (a new run folder, or one holding a classifier)."""
    run = RunDir(run_dir)
    detector_dir = run.detector
    if detector_dir.last.is_file():
        raise FileExistsError(f"{detector_dir.path} already holds a detector: continue it with  simpsons detect train "
                              f"--resume {run}  or train into another folder")
    data = _run_data(config, data_dir, run)
    detector_dir.make()
    check_writable(detector_dir.path)
    config.save(detector_dir.config)
    return _fit(config, run, data, progress)


def resume_detector(run_dir: str | Path, progress: bool = True) -> RunDir:
    """Continue an interrupted detector run from its last finished epoch."""
    run = RunDir(run_dir)
    if not run.detector.last.is_file():
        raise FileNotFoundError(f"{run.detector.last} does not exist: {run} holds no detector run to resume")
    config = DetectConfig.load(run.detector.config)
    return _fit(config, run, RunData.read(run), progress)


def _run_data(config: DetectConfig, data_dir: str | Path, run: RunDir) -> RunData:
    if run.dataset.is_file():  # a classifier's folder: its split, so the detector is scored on images it never saw
        data = RunData.read(run)
        if Path(data_dir).resolve() != data.root.resolve():
            print(f"note: {run} holds a classifier of {data.root}; the detector uses that dataset and its split")
        return data
    split = Config(split=config.split, val_fraction=config.val_fraction, val_groups=config.val_groups,
                   seed=config.seed)
    run.make()
    return prepare_run_data(split, data_dir, run)


def _backbone(config: DetectConfig, run: RunDir) -> torch.nn.Module:
    if config.init_from_classifier and run.best.is_file():
        classifier = checkpoint.load_model(run)
        if classifier.config.backbone == config.backbone:
            print(f"backbone: {config.backbone} from the classifier in {run.best}")
            return classifier.model
    return create_model(config.backbone, num_classes=1, weights=config.weights)


def real_boxes(config: DetectConfig, data: RunData, folder: DetectorDir) -> RealScenes | None:
    """The real boxes of ``config.boxes`` that training may use: not those on validation images, which held-out
    scenes are made of. Every box left out is listed in ``rejected_boxes.csv`` with the reason."""
    if config.boxes is None:
        return None
    annotations = read_boxes(config.boxes, data.root)
    validation = {Path(sample.path).resolve() for sample in data.split.val}
    kept = [box for box in annotations.boxes if box.path.resolve() not in validation]
    on_validation = [Rejected(box.where or str(box.path), "a validation image: held-out scenes are made of them")
                     for box in annotations.boxes if box.path.resolve() in validation]
    real = real_scenes(Annotations(kept, []), data.classes, size=config.scene_size)
    rejected = annotations.rejected + on_validation + real.rejected
    write_rows(folder.rejected_boxes, ("where", "reason"), [(r.where, r.reason) for r in rejected])
    print(f"real boxes: {len(real)} images from {config.boxes}; {len(rejected)} boxes left out "
          f"(listed in {folder.rejected_boxes})")
    for reason in rejected[:MAX_REJECTED_SHOWN]:
        print(f"  {reason.where}: {reason.reason}")
    if len(real) == 0:
        raise UserError(f"{config.boxes}: no box can be trained on (see {folder.rejected_boxes})")
    return real


def _training_scenes(config: DetectConfig, sets: SceneSets, real: RealScenes | None, epoch: int) -> Dataset:
    """The epoch's scenes: new ones every epoch (index ranges follow the epoch), plus real boxes when given."""
    first = epoch * config.scenes_per_epoch
    scenes = Subset(SceneDataset(sets.train, first + config.scenes_per_epoch),
                    range(first, first + config.scenes_per_epoch))
    if real is None:
        return scenes
    count = round(config.scenes_per_epoch * config.real_fraction / (1 - config.real_fraction))
    picks = torch.randint(len(real), (count,), generator=torch.Generator().manual_seed(config.seed + epoch))
    return ConcatDataset([scenes, Subset(real, picks.tolist())])


def _fit(config: DetectConfig, run: RunDir, data: RunData, progress: bool) -> RunDir:
    torch.manual_seed(config.seed)
    sets = scene_sets(config, data)
    real = real_boxes(config, data, run.detector)
    detector = create_detector(_backbone(config, run), len(data.classes), config)
    backbone_params = [p for p in detector.backbone.body.parameters() if p.requires_grad]
    backbone_ids = {id(p) for p in backbone_params}
    other_params = [p for p in detector.parameters() if p.requires_grad and id(p) not in backbone_ids]
    optimizer = torch.optim.AdamW([{"params": other_params, "lr": config.lr},
                                   {"params": backbone_params, "lr": config.lr * config.backbone_lr_mult}],
                                  weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(config.scenes_per_epoch / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    schedule = WarmupCosineSchedule(optimizer, total_steps, max(1, round(config.warmup_fraction * total_steps)))
    start_epoch, rows = 0, []
    if run.detector.last.is_file():
        state = checkpoint.read(run.detector.last)
        detector.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch = state["epoch"] + 1
        rows = read_rows(run.detector.metrics)[:start_epoch]
        print(f"resuming {run.detector.path} at epoch {start_epoch + 1}/{config.epochs}")
    print(f"detector: FCOS on {config.backbone}, {len(data.classes)} classes, {config.scene_size}px scenes of 1-"
          f"{config.max_characters} characters, {config.scenes_per_epoch} a epoch for {config.epochs} epochs; "
          f"{len(data.split.train)} training / {len(data.split.val)} held-out images")
    workers = loader_workers(config.num_workers)
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        loader = DataLoader(_training_scenes(config, sets, real, epoch), batch_size=config.batch_size, shuffle=True,
                            num_workers=workers, collate_fn=collate_scenes,
                            generator=torch.Generator().manual_seed(config.seed + epoch))
        losses = _train_one_epoch(detector, optimizer, schedule, loader, f"epoch {epoch + 1}/{config.epochs}",
                                  progress)
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **losses,
               "seconds": round(time.perf_counter() - started, 1)}
        rows.append(row)
        print(f"epoch {epoch + 1}/{config.epochs}  loss {losses['loss']:.3f}  (finding "
              f"{losses['classification']:.3f}, box {losses['bbox_regression']:.3f}, centre-ness "
              f"{losses['bbox_ctrness']:.3f}, naming {losses['naming']:.3f})  {row['seconds']:.0f}s")
        write_rows(run.detector.metrics, METRIC_COLUMNS, [[r[c] for c in METRIC_COLUMNS] for r in rows])
        _save(detector, optimizer, schedule, config, data.classes, epoch, run.detector)
    return run


def _train_one_epoch(detector, optimizer, schedule, loader: DataLoader, desc: str, progress: bool) -> dict[str, float]:
    set_training(detector)
    sums: dict[str, float] = {}
    batches = 0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images = [image.float().div_(255) for image in images]
        parts = detector(images, targets)
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise UserError(f"the detector diverged in {desc} (loss {loss.item()}): train again with a lower lr "
                            f"(--set lr=...)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.after_step()
        for name, value in {"loss": loss, **parts}.items():
            sums[name] = sums.get(name, 0.0) + value.item()
        batches += 1
    return {name: total / max(batches, 1) for name, total in sums.items()}


def _save(detector, optimizer, schedule, config: DetectConfig, classes: list[str], epoch: int,
          folder: DetectorDir) -> None:
    """``last.pt`` for a resume; ``best.pt`` for inference: the last epoch's weights, which the cosine schedule
    has brought to rest (scoring held-out scenes every epoch would cost more than an epoch on a CPU)."""
    weights = detector.state_dict()
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "model": weights, "optimizer": optimizer.state_dict(),
                            "schedule": schedule.state_dict(), "epoch": epoch}, folder.last)
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "model": weights, "config": config.to_dict(),
                            "classes": list(classes), "epoch": epoch}, folder.best)

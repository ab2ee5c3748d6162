"""``simpsons evaluate``: a run's best model on its validation split, or on another labelled folder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..augment import build_eval_transform
from ..data.dataset import ImageDataset
from ..data.run_data import RunData
from ..data.scan import Skipped, scan_dataset, write_skipped
from ..training import load_model
from ..training.validate import predict
from .report import write_report


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    labels_from_filenames: bool = False,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> dict:
    """Evaluate ``RUN/best.pt``; results go to ``out_dir`` (default ``RUN/eval``)."""
    run_dir = Path(run_dir)
    loaded = load_model(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "eval"
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
    transform = build_eval_transform(loaded.config.image_size, loaded.mean, loaded.std)
    dataset = ImageDataset(samples, loaded.classes, transform, decode_size=loaded.config.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=min(4, torch.get_num_threads()))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory_format = torch.channels_last if loaded.config.channels_last else torch.contiguous_format
    model = loaded.model.to(device, memory_format=memory_format)
    logits, targets = predict(model, loader, device, loaded.config.amp, loaded.config.channels_last,
                              progress=progress, desc="evaluating")
    out_dir.mkdir(parents=True, exist_ok=True)
    if skipped:
        write_skipped(out_dir / "skipped.csv", skipped)
    return write_report(logits, targets, loaded.classes, out_dir, extra={"num_skipped": len(skipped)},
                        paths=[s.path for s in samples])

"""fastai's standard recipe on a split made by the toolkit, for ``recipes.py`` to compare the toolkit against.

    python benchmarks/fastai_fine_tune.py --split-dir RUN --out DIR --epochs N [--batch-size B] [--image-size S]
        [--channels-last]

``vision_learner`` on the same timm EfficientNet-Lite0 with the same ImageNet weights the toolkit loads offline
(``create_model("efficientnet_lite0", ..., "imagenet")``; fastai cuts it before its pooling and adds its own
head), ``aug_transforms()``, ImageNet normalisation, and ``fine_tune(epochs - 1, freeze_epochs=1)``: one epoch of
the head alone, then everything with discriminative learning rates, one cycle. ``--channels-last`` adds fastai's
``to_channelslast`` (without mixed precision) to train in the memory format the toolkit uses by default: on a CPU
it roughly halves the time of EfficientNet's depthwise convolutions. The train/validation split is the
toolkit's ``split.csv`` in ``--split-dir``. Writes ``predictions.csv`` (path, true, predicted) and
``timing.json`` (seconds from building the data loaders to the end of training, per-epoch validation included).

fastai is not a dependency of the toolkit: this file runs in a separate virtual environment that sees the
toolkit's environment (so the same torch, timm and weights) and adds fastai; ``bench_python()`` creates it.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import sysconfig
import time
import venv
from importlib import metadata
from pathlib import Path

FASTAI = "fastai==2.8.12"
PREDICTIONS = "predictions.csv"
TIMING = "timing.json"


class FastaiUnavailable(RuntimeError):
    """fastai could not be installed next to the toolkit's packages; the message has pip's reason."""


def bench_python(venv_dir: Path) -> Path:
    """The Python of a virtual environment with fastai that sees this interpreter's packages, made on first use.

    A ``.pth`` file adds this interpreter's site-packages (``--system-site-packages`` would add the base
    interpreter's instead when this one is itself a venv), and pip installs fastai under a constraints file
    pinning every package already here, so torch and the rest are used as they are, never replaced."""
    python = venv_dir / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    site_packages = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    link = f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
    if not (site_packages / "_toolkit.pth").is_file() or (site_packages / "_toolkit.pth").read_text() != link:
        (site_packages / "_toolkit.pth").write_text(link)
    if subprocess.run([python, "-c", "import fastai"], capture_output=True).returncode == 0:
        return python
    constraints = venv_dir / "constraints.txt"
    constraints.write_text("".join(sorted({f"{d.metadata['Name']}=={d.version}\n" for d in metadata.distributions()
                                           if d.metadata["Name"]})))
    print(f"installing {FASTAI} into {venv_dir} (once)", flush=True)
    result = subprocess.run([python, "-m", "pip", "install", "--quiet", "-c", constraints, FASTAI],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise FastaiUnavailable(f"pip could not install {FASTAI} beside the toolkit's packages "
                                f"(constraints {constraints}):\n{(result.stderr or result.stdout).strip()[-2000:]}")
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split-dir", required=True, help="a folder with the toolkit's split.csv and dataset.json")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, required=True, help="in all: one frozen, the rest unfrozen")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true", help="fastai's to_channelslast, without AMP")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (one frozen epoch, then at least one unfrozen)")

    import pandas as pd
    from fastai.vision.all import (
        CategoryBlock, ColReader, ColSplitter, DataBlock, ImageBlock, Normalize, Resize, accuracy, aug_transforms,
        imagenet_stats, set_seed, vision_learner,
    )

    from simpsons_classifier.data.run_data import RunData
    from simpsons_classifier.models import create_model

    data = RunData.read(args.split_dir)
    frame = pd.DataFrame(
        [(s.path, s.label, subset == "val") for subset, samples in (("train", data.split.train),
                                                                     ("val", data.split.val)) for s in samples],
        columns=["path", "label", "is_valid"],
    )

    def imagenet_backbone(pretrained: bool = True):
        """What fastai calls to build the model: the toolkit's ImageNet EfficientNet-Lite0 (fastai cuts off
        its pooling and classifier)."""
        return create_model(args.backbone, 1000, "imagenet" if pretrained else "none")

    set_seed(args.seed)
    started = time.perf_counter()
    blocks = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=data.classes)),
        get_x=ColReader("path"), get_y=ColReader("label"), splitter=ColSplitter("is_valid"),
        item_tfms=Resize(args.image_size),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
    )
    loaders = blocks.dataloaders(frame, bs=args.batch_size)
    learner = vision_learner(loaders, imagenet_backbone, n_out=len(data.classes), metrics=accuracy)
    if args.channels_last:
        learner.to_channelslast(use_amp=False)
    learner.fine_tune(args.epochs - 1, freeze_epochs=1)
    seconds = time.perf_counter() - started

    probabilities, targets = learner.get_preds(dl=loaders.valid)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / PREDICTIONS, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted"])
        for path, true, predicted in zip(loaders.valid.items["path"], targets.tolist(),
                                         probabilities.argmax(1).tolist()):
            writer.writerow([path, data.classes[true], data.classes[predicted]])
    (out / TIMING).write_text(json.dumps({"seconds": seconds, "epochs": args.epochs, "batch_size": args.batch_size,
                                          "channels_last": args.channels_last, "fastai": metadata.version("fastai")}))


if __name__ == "__main__":
    sys.exit(main())

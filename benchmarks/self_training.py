"""How good can pseudo-labels from a few labels be? A linear head on frozen ImageNet features, self-trained.

    python benchmarks/self_training.py --out runs/semisup-random [--labels 2 4] [--draws 4] [--views 6]

Reads the runs of ``benchmarks/semisupervised.py`` in ``--out`` (the full run's split, and each ``labelsK/split``
with its K labelled images a character), computes the frozen backbone's features once, and prints for each K:
the probe fitted on the labelled images and their mirror images (what a semi-supervised run starts from; beside
it, fitted without the mirror images), the share of the unlabelled images its pseudo-labels get right (overall and
per drawing source), and the probe self-trained on its own surest guesses (each round adds the M most confident
unlabelled images of each predicted class, four rounds), beside the probe fitted on every label. It bounds what
pseudo-labelling the head can give without the features changing. Last, what the unlabelled images' own
neighbourhoods give: label spreading over a k-NN graph of the L2-normalised features (scikit-learn's
``LabelSpreading``, its default 7 neighbours and alpha 0.2; Zhou et al., 2004), the share of the unlabelled images
it labels right and the probe fitted on its labels. And the semi-supervised start ``train --unlabeled`` makes
(``training/pseudo_start.py``): the probe refitted with every unlabelled image under the class the anchored k-means
gives it in ``discover``'s features, each drawing source moved and scaled to the common mean and spread, clustered
twice, the whitening learnt again from each class's central half (here without the known-character rule, as every
unlabelled image is of a known character), beside the probe refitted with as many wrong labels drawn at random (how
much the start's errors cost because they are not random: they fall on look-alikes, whole drawing sources at a time)
and the starts of the two releases before: clustered once, whitened by the labelled images alone, each source
standardised, and each source only moved to the common mean.
Then how right pseudo-labels must be to close a given share of the gap: the probe refitted with every unlabelled
image, labels right on 80, 90 and 95 % of them, the wrong ones drawn at random.

With ``--draws N``: the three starts (clustered twice, clustered once, clustered once with the sources only moved)
again over N other draws of the labelled images (seeded), the mean share of the unlabelled images each labels right
and of the probe refitted with them: one draw's figures move by a few points with the images drawn.

With ``--views N``: FixMatch's consistency on the head alone, for thousands of steps. Each training image's N weak
and N strong views (the recipe's two pipelines, the reference engine) go through the frozen backbone once; a linear
head starting from the probe is then trained on them, FixMatch's way (each step 32 labelled views, and 64
unlabelled images pseudo-labelled from a weak view, their strong view trained on above the confidence bar), beside
the same head trained on the labelled views alone. It asks whether FixMatch's many steps help where the features
cannot change.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from linear_probe import fit_probe, frozen_features
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading
from torch.utils.data import DataLoader

from simpsons_classifier.augment import build_eval_transform
from simpsons_classifier.augment.engines import build_view_pair_transform
from simpsons_classifier.config import Config
from simpsons_classifier.data.dataset import ImageDataset
from simpsons_classifier.data.run_data import RunData
from simpsons_classifier.data.split import source_group
from simpsons_classifier.models import create_model, data_config, discovery_embedding
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training.anchored_kmeans import SOURCE_MIN_IMAGES, l2_normalise, mirror_averaged
from simpsons_classifier.training.probe import fit_head, pre_logit_features, probe_images
from simpsons_classifier.training.pseudo_start import clustered_labels

ROUNDS = 4
PER_CLASS = (2, 4, 8)
HEAD_STEPS = 3000
HEAD_BARS = (0.8, 0.95)
RIGHT_AT_RANDOM = (0.8, 0.9, 0.95)


def self_trained(x: np.ndarray, x_mirrored: np.ndarray, y: np.ndarray, pool: np.ndarray, pool_mirrored: np.ndarray,
                 per_class: int) -> LogisticRegression:
    """The probe refitted ROUNDS times on the labelled images plus, each round, ``per_class`` more of the most
    confident pool images of each class it predicts, under their predicted class (``*_mirrored``: the same images
    mirrored, which the probe is fitted on too)."""
    model = fit_probe(x, x_mirrored, y)
    for round_ in range(1, ROUNDS + 1):
        probability = model.predict_proba(pool)
        guess, confidence = model.classes_[probability.argmax(1)], probability.max(1)
        chosen = np.concatenate([
            np.flatnonzero(guess == c)[np.argsort(-confidence[guess == c])][: per_class * round_]
            for c in np.unique(guess)])
        model = fit_probe(np.concatenate([x, pool[chosen]]), np.concatenate([x_mirrored, pool_mirrored[chosen]]),
                          np.concatenate([y, guess[chosen]]))
    return model


def label_spread(x: np.ndarray, y: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Every image's class by label spreading from the ``labelled`` ones over the k-NN graph of ``x``."""
    classes = np.unique(y)
    known = np.where(labelled, np.searchsorted(classes, y), -1)  # -1: unlabelled, as scikit-learn expects
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return classes[LabelSpreading(kernel="knn").fit(unit, known).transduction_]


def wrong_at_random(truth: np.ndarray, wrong: int, classes: np.ndarray, seed: int = 0) -> np.ndarray:
    """``truth`` with ``wrong`` labels, drawn at random, changed to another of ``classes`` drawn at random."""
    rng = np.random.default_rng(seed)
    labels = truth.copy()
    for row in rng.choice(len(truth), wrong, replace=False):
        labels[row] = rng.choice(classes[classes != truth[row]])
    return labels


def mean_shifted(features: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """``features``, L2-normalised, with each source of at least ``SOURCE_MIN_IMAGES`` images moved by one offset to
    the common mean and not scaled: the start of two releases before, beside ``source_standardised``."""
    unit = l2_normalise(features)
    common = unit.mean(axis=0)
    for source in np.unique(sources):
        rows = sources == source
        if rows.sum() >= SOURCE_MIN_IMAGES:
            unit[rows] += common - unit[rows].mean(axis=0)
    return unit


def source_starts(embedded: np.ndarray, classes: np.ndarray, labelled: np.ndarray, groups: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """The anchored k-means' class of each unlabelled image (``~labelled``) in ``embedded``, the drawing sources
    (``groups``) standardised and clustered twice as training does, standardised and clustered once, only moved to
    the common mean and clustered once."""
    sources = np.concatenate([groups[labelled], groups[~labelled]])
    moved = mean_shifted(np.vstack([embedded[labelled], embedded[~labelled]]), sources)
    return {"twice": clustered_labels(embedded[labelled], classes[labelled], embedded[~labelled], sources),
            "once": clustered_labels(embedded[labelled], classes[labelled], embedded[~labelled], sources,
                                     whitening_share=0),
            "moved": clustered_labels(moved[:labelled.sum()], classes[labelled], moved[labelled.sum():],
                                      whitening_share=0)}


def refitted_score(x: np.ndarray, x_mirrored: np.ndarray, y: np.ndarray, labelled: np.ndarray, pseudo: np.ndarray,
                   val_x: np.ndarray, val_y: np.ndarray) -> float:
    """Validation top-1 of the probe refitted on the ``labelled`` images and the unlabelled ones under ``pseudo``
    (-1: left out)."""
    used = pseudo >= 0
    return fit_probe(np.concatenate([x[labelled], x[~labelled][used]]),
                     np.concatenate([x_mirrored[labelled], x_mirrored[~labelled][used]]),
                     np.concatenate([y[labelled], pseudo[used]])).score(val_x, val_y)


def drawn_labelled(classes: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """A mask keeping ``per_class`` images of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    labelled = np.zeros(len(classes), dtype=bool)
    for cls in np.unique(classes):
        labelled[rng.choice(np.flatnonzero(classes == cls), per_class, replace=False)] = True
    return labelled


def start_embedding(data: RunData, config: Config) -> np.ndarray:
    """The training images in the features the semi-supervised start clusters by (the frozen ImageNet backbone's
    ``discovery_embedding``, mirror-averaged), row for row."""
    model = create_model(config.backbone, len(data.classes), "imagenet").eval()
    norm = data_config(model)
    images = probe_images(data.split.train, data.classes,
                          build_eval_transform(config.image_size, norm["mean"], norm["std"]), config.image_size)
    embedded, _ = pre_logit_features(model, DataLoader(images, batch_size=64, num_workers=2), torch.device("cpu"),
                                     embedding=discovery_embedding)
    return mirror_averaged(*np.split(embedded, 2))


def view_features(data: RunData, config: Config, views: int) -> tuple[np.ndarray, np.ndarray]:
    """(weak, strong): ``views`` × N × D frozen ImageNet features of ``views`` weak and strong views of each
    training image (the reference engine's pipelines)."""
    torch.manual_seed(config.seed)
    model = create_model(config.backbone, len(data.classes), "imagenet").eval()
    norm = data_config(model)
    pair = build_view_pair_transform(Config.from_dict({"augment_engine": "torchvision"}, base=config),
                                     norm["mean"], norm["std"])

    def features(transform):
        dataset = ImageDataset(data.split.train, data.classes, transform, decode_size=config.image_size)
        return pre_logit_features(model, DataLoader(dataset, batch_size=64, num_workers=2), torch.device("cpu"))[0]

    return tuple(np.stack([features(pipeline) for _ in range(views)]) for pipeline in (pair.weak, pair.strong))


def head_fixmatch(plain: np.ndarray, mirrored: np.ndarray, weak: np.ndarray, strong: np.ndarray, y: np.ndarray,
                  labelled: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, bar: float | None) -> float:
    """Validation top-1 of a linear head started from the probe and trained HEAD_STEPS steps on the cached views:
    on the labelled ones alone (``bar`` None), or with FixMatch's loss on the unlabelled ones too."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    head = torch.nn.Linear(plain.shape[1], int(y.max()) + 1)
    fit_head(SimpleNamespace(get_classifier=lambda: head), np.vstack([plain[labelled], mirrored[labelled]]),
             np.tile(y[labelled], 2))  # the probe, as training fits it
    weak_views = torch.as_tensor(np.concatenate([plain[None], mirrored[None], weak]), dtype=torch.float32)
    strong_views = torch.as_tensor(strong, dtype=torch.float32)
    every_view = torch.cat([weak_views, strong_views])
    classes = torch.as_tensor(y)
    labelled_rows, unlabelled_rows = np.flatnonzero(labelled), np.flatnonzero(~labelled)
    optimiser = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(HEAD_STEPS):
        rows = torch.as_tensor(rng.choice(labelled_rows, 32))
        loss = F.cross_entropy(head(every_view[torch.randint(len(every_view), (32,)), rows]), classes[rows])
        if bar is not None:
            rows = torch.as_tensor(rng.choice(unlabelled_rows, 64))
            with torch.no_grad():
                confidence, guess = head(weak_views[torch.randint(len(weak_views), (64,)), rows]).softmax(1).max(1)
            strong_logits = head(strong_views[torch.randint(len(strong_views), (64,)), rows])
            loss = loss + (F.cross_entropy(strong_logits, guess, reduction="none") * (confidence >= bar)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return float((head(torch.as_tensor(val_x, dtype=torch.float32)).argmax(1).numpy() == val_y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/semisup-random"))
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--draws", type=int, default=0,
                        help="also compare the three starts over this many other draws of the labelled images")
    parser.add_argument("--views", type=int, default=0,
                        help="also FixMatch on the head alone over this many cached weak and strong views an image")
    args = parser.parse_args()

    full = RunData.read(args.out / "full")
    config = Config.load(RunDir(args.out / "full").config)
    train_x, train_mirrored, train_y, val_x, val_y = frozen_features(full, config.backbone, config.image_size)
    paths = [str(s.path) for s in full.split.train]
    groups = np.array([source_group(p) for p in paths])
    embedded = start_embedding(full, config)
    weak, strong = view_features(full, config, args.views) if args.views else (None, None)
    print(f"\nprobe on every label: {100 * fit_probe(train_x, train_mirrored, train_y).score(val_x, val_y):.1f}% "
          f"({len(train_y)} images, validation {len(val_y)})")
    for labels in args.labels:
        kept = {str(s.path) for s in RunData.read(args.out / f"labels{labels}" / "split").split.train}
        labelled = np.array([p in kept for p in paths])
        start = fit_probe(train_x[labelled], train_mirrored[labelled], train_y[labelled])
        alone = fit_probe(train_x[labelled], None, train_y[labelled])
        pool_x, pool_y, pool_groups = train_x[~labelled], train_y[~labelled], groups[~labelled]
        right = start.predict(pool_x) == pool_y
        by_group = defaultdict(list)
        for group, correct in zip(pool_groups, right):
            by_group[group].append(correct)
        print(f"\n{labels} labels a character: probe {100 * start.score(val_x, val_y):.1f}% (fitted on the images "
              f"alone, without their mirror images: {100 * alone.score(val_x, val_y):.1f}%), its pseudo-labels right "
              f"on {100 * right.mean():.0f}% of {len(pool_y)} unlabelled images ("
              + ", ".join(f"{g} {100 * np.mean(v):.0f}%" for g, v in sorted(by_group.items())) + ")")
        for per_class in PER_CLASS:
            trained = self_trained(train_x[labelled], train_mirrored[labelled], train_y[labelled], pool_x,
                                   train_mirrored[~labelled], per_class)
            print(f"  self-trained, {per_class} more a class each round: {100 * trained.score(val_x, val_y):.1f}%")
        twice, once, moved = source_starts(embedded, train_y, labelled, groups).values()
        starts = {
            "the start (training's): every unlabelled image, under its anchored k-means class in discover's features, "
            "each drawing source moved and scaled to the common mean and spread, clustered twice, the whitening "
            "learnt again from each class's central half": twice,
            "as many labels wrong as the start's, but which and how drawn at random":
                wrong_at_random(pool_y, int((twice != pool_y).sum()), np.unique(train_y)),
            "the start of the release before: the same, clustered once, whitened by the labelled images alone": once,
            "the start two releases before: clustered once, each source moved to the common mean, not scaled": moved}

        def refitted_with(pseudo: np.ndarray) -> float:
            """The probe refitted on the labelled images and the unlabelled ones under ``pseudo`` (-1: left out)."""
            return refitted_score(train_x, train_mirrored, train_y, labelled, pseudo, val_x, val_y)

        for name, pseudo in starts.items():
            used = pseudo >= 0
            print(f"  {name}: {100 * used.mean():.0f}% of the unlabelled images, right on "
                  f"{100 * (pseudo[used] == pool_y[used]).mean():.0f}% of them; the probe refitted with them "
                  f"{100 * refitted_with(pseudo):.1f}%")
        at_random = [refitted_with(wrong_at_random(pool_y, round((1 - right) * len(pool_y)), np.unique(train_y)))
                     for right in RIGHT_AT_RANDOM]
        print("  labels right on " + " / ".join(f"{100 * right:.0f}" for right in RIGHT_AT_RANDOM) + "% of the "
              "unlabelled images, the wrong ones drawn at random: the probe refitted with them "
              + " / ".join(f"{100 * score:.1f}" for score in at_random) + "%")
        spread = label_spread(train_x, train_y, labelled)
        print(f"  label spreading: right on {100 * (spread[~labelled] == pool_y).mean():.0f}% of the unlabelled "
              f"images, probe on its labels "
              f"{100 * fit_probe(train_x, train_mirrored, spread).score(val_x, val_y):.1f}%")
        if args.draws:
            labels_right, refitted = defaultdict(list), defaultdict(list)
            for seed in range(1, args.draws + 1):
                drawn = drawn_labelled(train_y, labels, seed)
                for name, pseudo in source_starts(embedded, train_y, drawn, groups).items():
                    labels_right[name].append((pseudo == train_y[~drawn]).mean())
                    refitted[name].append(refitted_score(train_x, train_mirrored, train_y, drawn, pseudo, val_x, val_y))
            print(f"  over {args.draws} other draws of the labelled images, clustered twice / once / once with the "
                  "sources only moved: labels right on " + " / ".join(
                      f"{100 * np.mean(v):.1f}" for v in labels_right.values()) + "%, the probe refitted with them "
                  + " / ".join(f"{100 * np.mean(v):.1f}" for v in refitted.values()) + "%")
        if args.views:
            scores = [head_fixmatch(train_x, train_mirrored, weak, strong, train_y, labelled, val_x, val_y, bar)
                      for bar in (None, *HEAD_BARS)]
            print(f"  the head alone, {HEAD_STEPS} steps over {args.views} weak and strong views an image: labelled "
                  f"views {100 * scores[0]:.1f}%, FixMatch " + ", ".join(
                      f"bar {bar} {100 * score:.1f}%" for bar, score in zip(HEAD_BARS, scores[1:])))


if __name__ == "__main__":
    main()

"""Discovering new characters, by the Generalized Category Discovery protocol (Vaze et al., 2022).

    python benchmarks/discover.py [--data data/standin] [--out runs/discover-bench] [--new 25] [--epochs 4]
        [--seeds 3] [--set split=random ...] [--discover-only]

A run is trained on the stand-in (``simpsons data standin --out data/standin --classes 50``) with
``configs/demo.yaml``'s settings, ``--new`` characters kept out of it entirely (``holdout_classes``). The
unlabelled pool is every image of those characters plus the known characters' validation images; the labelled set
is the run's training images. The whole pool is clustered, the known characters anchored, by the clustering
``simpsons discover`` uses (``discovery/clustering.py``), and scored as GCD does: one Hungarian matching of clusters
to characters over the whole pool, then the share matched right over all of it (All), over the known characters'
images (Old) and over the new characters' (New).

First line: the detail ``discover`` compares images at (``discovery/detail.py``): the level of detail (the images as
they are, or shrunk to a longest side in pixels) chosen by ``detail_features``, as ``discover`` chooses it, and each
level's score on the known characters, half of them treated as new. Rows: the penultimate features of the run's
``best.pt`` of the images as they are, each image's averaged with its mirror image's (the frozen ImageNet backbone's
when ``best.pt`` is the probe head); the same of the images shrunk to each level; the first without the mirror
image; the first concatenated with the frozen ImageNet backbone's, averaged the same way (each L2-normalised); and
``discover``'s own, at the level it chooses: the penultimate features beside the mean-pooled maps of the backbone's
last two feature stages (``models.PenultimateAndStages``), each drawing source named in the file names standardised
over the training images and the pool (``anchored_kmeans.standardised_by_source``), and before it the same with the
sources as they are. Columns: the estimated number of new clusters (in
brackets, k-means' count before the merge step) against the true one and the accuracy with it, for each of ``--seeds``
clustering seeds (k-means' starts and the halvings the merge threshold is learnt on; a change in the last bits of
the features moves the result as much as a seed does) and their mean; the accuracy with the true
number (the clustering's quality apart from the count); that without the within-class whitening; the purity of
the clustering with the estimated number (1 when no cluster mixes characters, however split); and the number
GCD's own criterion (plain k-means' accuracy on the labelled images, the smallest count at its maximum) picks on
the same features.

Then, in ``discover``'s row, the new characters it estimates: the number of groups the new clusters make
when those likely the same character are taken as one (``Clusters.characters``: the merge cut where the known
characters, half of them as new, make as many groups as they are characters), for each seed and their mean, and
the accuracy with those groups joined.

Then k-means' clusters before the merge, for each seed: their count, their accuracy, and the accuracy with each
joined to the others whose most common character is its own (as no merge of them can beat): how much the merge
loses.

Then, for seed 0 of ``discover``'s row, the new characters' images placed right (in the cluster matched to their
character) by drawing source: which of a character's styles the clustering loses.

Then, for each row, what the features link: the share of the new characters' images whose nearest image in the
pool (in the space they are clustered in) is of the same character, and the share whose nearest image of another
drawing source (the file name before ``__``: a sprite style, a font, an emoji vendor) is. Clustering can only put a
character's sources together where the second share is high.

The trained run and the features are kept in ``--out`` and reused while ``best.pt`` is unchanged (what the cache
lacks is added to it).
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics.cluster import contingency_matrix

from simpsons_classifier.config import Config
from simpsons_classifier.data.run_data import RunData, read_heldout
from simpsons_classifier.data.split import source_group
from simpsons_classifier.discovery.clustering import clustering_accuracy, discover_clusters, matched_right
from simpsons_classifier.discovery.detail import DETAIL_LEVELS, Detail, detail_features, features_at
from simpsons_classifier.evaluation.run_model import eval_transform, mirrored_transform, sample_outputs
from simpsons_classifier.models import PenultimateFeatures, create_model, data_config
from simpsons_classifier.run_dir import RunDir
from simpsons_classifier.training import LoadedModel, load_model, train
from simpsons_classifier.training.anchored_kmeans import (
    Clusters,
    clustering_space,
    l2_normalise,
    mirror_averaged,
    semi_supervised_kmeans,
    standardised_by_source,
)

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
SHRUNK_LEVELS = [level for level in DETAIL_LEVELS if level is not None]
GCD_COUNTS = range(0, 61, 2)
"""New-cluster counts GCD's criterion is evaluated at (each a plain k-means of the whole set)."""


def trained_run(data: Path, out: Path, new: int, epochs: int, overrides: list[str]) -> RunDir:
    """The run of ``--out``, trained again when missing or trained with other settings."""
    config = Config.load(DEMO_CONFIG, [f"holdout_classes={new}", f"epochs={epochs}", *overrides])
    run = RunDir(out / "run")
    if run.best.is_file() and Config.load(run.config) == config:
        return run
    shutil.rmtree(run.path, ignore_errors=True)
    started = time.perf_counter()
    train(config, data, run)
    print(f"trained in {time.perf_counter() - started:.0f} s")
    return run


def features(run: RunDir, cache: Path) -> dict[str, np.ndarray]:
    """Fine-tuned and frozen-ImageNet features of the training, validation and held-out images, as they are and
    mirrored, and their classes; the fine-tuned ones at each level of detail; ``discover``'s at the detail it
    chooses. Kept in ``cache`` while ``best.pt`` is unchanged; what the cache lacks is computed and added."""
    found = dict(np.load(cache)) if run.is_newer_than_best(cache) else {}
    loaded, data, heldout = load_model(run), RunData.read(run), read_heldout(run)
    subsets = {"train": data.split.train, "val": data.split.val, "heldout": heldout}
    if "imagenet_heldout_mirrored" not in found:
        frozen = create_model(loaded.config.backbone, len(loaded.classes), "imagenet").eval()
        norm = data_config(frozen)
        models = {"finetuned": loaded, "imagenet": LoadedModel(frozen, loaded.classes, loaded.config,
                                                               tuple(norm["mean"]), tuple(norm["std"]))}
        found |= {f"{name}_{subset}{suffix}": sample_outputs(model, samples, transform(model),
                                                             desc=f"{name} {subset}{suffix}").features.numpy()
                  for name, model in models.items() for subset, samples in subsets.items()
                  for suffix, transform in (("", eval_transform), ("_mirrored", mirrored_transform))}
        found |= {f"class_{subset}": np.array([s.label for s in samples]) for subset, samples in subsets.items()}
        found |= {f"finetuned_{subset}_{level}px": features_at(loaded, samples, level, desc=f"{subset}, {level} px",
                                                               embedding=PenultimateFeatures)
                  for level in SHRUNK_LEVELS for subset, samples in subsets.items()}
    if "discover_heldout" not in found:
        detail = detail_features(loaded, data.split.train, progress=True).detail
        found["detail"] = np.array([[detail.scores[level], detail.errors[level]] for level in DETAIL_LEVELS])
        found["detail_chosen"] = np.array(DETAIL_LEVELS.index(detail.longest_side))
        found |= {f"discover_{subset}": features_at(loaded, samples, detail.longest_side, desc=f"{subset}, discover's")
                  for subset, samples in subsets.items()}
    np.savez(cache, **found)
    return found


def gcd_estimate(labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray, known: int) -> int:
    """GCD's criterion: the number of new clusters whose plain k-means of everything best recovers the labelled
    classes (the smallest such number)."""
    points = np.vstack([labelled, unlabelled])
    accuracy = {}
    for new in GCD_COUNTS:
        clusters = KMeans(known + new, n_init=3, random_state=0).fit_predict(points)[: len(labelled)]
        accuracy[new] = clustering_accuracy(labels, clusters, np.ones(len(labels), dtype=bool)).all
    return min(n for n in accuracy if accuracy[n] == max(accuracy.values()))


def as_likely_characters(clusters: Clusters) -> np.ndarray:
    """Each point's cluster, the new clusters likely the same character (``Clusters.characters``) joined."""
    known = clusters.known
    return np.array([c if c < known else known + clusters.character_of(c) for c in clusters.assignments])


def as_most_common(clusters: Clusters, truth: np.ndarray) -> Clusters:
    """``clusters`` with each new cluster joined to the others whose most common character is its own: the best any
    merge of them can do."""
    joined = clusters.assignments.copy()
    for cluster in np.unique(joined[joined >= clusters.known]):
        members = clusters.assignments == cluster
        characters, counts = np.unique(truth[members], return_counts=True)
        joined[members] = clusters.known + np.searchsorted(np.unique(truth), characters[counts.argmax()])
    return replace(clusters, assignments=joined)


def nearest_is_same(points: np.ndarray, truth: np.ndarray, groups: np.ndarray, other_source: bool) -> np.ndarray:
    """For each of ``points`` (unit-length rows), whether its nearest other point (of another source, with
    ``other_source``) has the same class."""
    similarity = points @ points.T
    np.fill_diagonal(similarity, -np.inf)
    if other_source:
        similarity[groups[:, None] == groups[None, :]] = -np.inf
    return truth[similarity.argmax(axis=1)] == truth


def purity(truth: np.ndarray, clusters: np.ndarray) -> float:
    """Share of the images whose cluster's most common character is theirs: 1 when no cluster mixes characters,
    however many clusters a character is split into (what a user sorting folders by hand cares about)."""
    return float(contingency_matrix(truth, clusters).max(axis=0).sum() / len(truth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/standin", type=Path)
    parser.add_argument("--out", default="runs/discover-bench", type=Path)
    parser.add_argument("--new", type=int, default=25, help="characters kept out of training (default 25 of 50)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3, help="clustering seeds the estimated count is run with")
    parser.add_argument("--discover-only", action="store_true",
                        help="only discover's rows, with its sources standardised and as they are (on a large pool "
                             "each row takes a quarter of an hour)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. split=random for a dataset without the stand-in's drawing styles")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is missing: simpsons data standin --out {args.data} --classes 50")
    args.out.mkdir(parents=True, exist_ok=True)

    run = trained_run(args.data, args.out, args.new, args.epochs, args.overrides)
    found = features(run, args.out / "features.npz")
    data = RunData.read(run)
    classes = data.classes
    labels = np.searchsorted(classes, found["class_train"])
    truth = np.concatenate([found["class_val"], found["class_heldout"]])
    groups = np.array([source_group(s.path) for s in [*data.split.val, *read_heldout(run)]])
    train_groups = np.array([source_group(s.path) for s in data.split.train])
    old = np.isin(truth, classes)
    true_new = len(set(found["class_heldout"]))
    print(f"labelled: {len(labels)} training images of {len(classes)} characters; unlabelled pool: {len(truth)} "
          f"images ({old.sum()} validation images of known characters, {(~old).sum()} of {true_new} new ones)")

    def averaged(name: str, subset: str) -> np.ndarray:
        return mirror_averaged(found[f"{name}_{subset}"], found[f"{name}_{subset}_mirrored"])

    detail = Detail(DETAIL_LEVELS[int(found["detail_chosen"])], dict(zip(DETAIL_LEVELS, found["detail"][:, 0])),
                    dict(zip(DETAIL_LEVELS, found["detail"][:, 1])))
    print(f"discover compares images {detail.describe()}; the known characters, half of them as new, regroup "
          + ", ".join(f"{level or 'as they are'}{' px' if level else ''} {score:.3f} ± {detail.errors[level]:.3f}"
                      for level, score in detail.scores.items()))

    def labelled_and_pool(of) -> tuple[np.ndarray, np.ndarray]:
        return of("train"), np.vstack([of("val"), of("heldout")])

    spaces = {
        "the run's": labelled_and_pool(lambda subset: averaged("finetuned", subset)),
        **{f"the run's, {level} px": labelled_and_pool(
            lambda subset, level=level: found[f"finetuned_{subset}_{level}px"]) for level in SHRUNK_LEVELS},
        "the run's, unmirrored": labelled_and_pool(lambda subset: found[f"finetuned_{subset}"]),
        "the run's + ImageNet": labelled_and_pool(lambda subset: np.hstack(
            [l2_normalise(averaged("finetuned", subset)), l2_normalise(averaged("imagenet", subset))])),
    }

    def scored(clusters) -> str:
        accuracy = clustering_accuracy(truth, clusters.assignments, old)
        return f"{accuracy.all:.3f} {accuracy.old:.3f} {accuracy.new:.3f}"

    def counted(clusters) -> str:
        return f"{clusters.new} ({clusters.before_merging}) of {true_new}"

    def mean_scored(runs, assignments=lambda clusters: clusters.assignments) -> str:
        accuracies = [clustering_accuracy(truth, assignments(clusters), old) for clusters in runs]
        return " ".join(f"{np.mean([getattr(a, part) for a in accuracies]):.3f}" for part in ("all", "old", "new"))

    print(f"\n{'features':<22} {'new clusters':>18}  {'estimated k: All Old New':>24}  {'true k: All Old New':>19}  "
          f"{'no whitening':>17}  {'purity':>6}  {'GCD criterion':>13}")
    chosen = f"discover's, {detail.longest_side or 'as is'}{' px' if detail.longest_side else ''}"
    discovered = labelled_and_pool(lambda subset: found[f"discover_{subset}"])
    before = f"{chosen}, sources as they are"
    spaces[before] = discovered
    spaces[chosen] = standardised_by_source(*discovered, np.concatenate([train_groups, groups]))
    if args.discover_only:
        spaces = {name: spaces[name] for name in (before, chosen)}
    likely = []  # the seeds of the row discover uses, for the likely characters below
    links = {}
    for name, (labelled, unlabelled) in spaces.items():
        started = time.perf_counter()
        seeded = [discover_clusters(labelled, labels, unlabelled, known=len(classes), seed=seed)
                  for seed in range(args.seeds)]
        seconds = (time.perf_counter() - started) / args.seeds
        estimated = seeded[0]
        labelled_space, unlabelled_space = clustering_space(labelled, labels, unlabelled)
        at_true = semi_supervised_kmeans(labelled_space, labels, unlabelled_space, len(classes), true_new)
        unwhitened = semi_supervised_kmeans(l2_normalise(labelled), labels, l2_normalise(unlabelled), len(classes),
                                            true_new)
        gcd = gcd_estimate(labelled_space, labels, unlabelled_space, len(classes))
        print(f"{name:<22} {counted(estimated):>18}  {scored(estimated):>24}  {scored(at_true):>19}  "
              f"{scored(unwhitened):>17}  {purity(truth, estimated.assignments):>6.3f}  {gcd:>13}   "
              f"({seconds:.0f} s a seed)")
        for seed, clusters in enumerate(seeded[1:], 1):
            print(f"{'  seed ' + str(seed):<22} {counted(clusters):>18}  {scored(clusters):>24}")
        if len(seeded) > 1:
            count = f"{np.mean([c.new for c in seeded]):.1f} of {true_new}"
            print(f"{'  mean':<22} {count:>18}  {mean_scored(seeded):>24}")
        if name == chosen:
            likely = seeded
        links[name] = [nearest_is_same(unlabelled_space, truth, groups, other_source)[~old].mean()
                       for other_source in (False, True)]

    print(f"\n{detail.describe()}: the new clusters as likely characters (each seed's count, their mean; All Old New, "
          f"mean of the seeds, the clusters likely the same joined)")
    counts = [c.estimated_characters for c in likely]
    print(f"  {' / '.join(map(str, counts))} ({np.mean(counts):.1f}) of {true_new}, "
          f"{mean_scored(likely, as_likely_characters)}")
    labelled_space, unlabelled_space = clustering_space(spaces[chosen][0], labels, spaces[chosen][1])
    print("k-means' clusters before the merge (each seed: their count; All Old New; All Old New each joined to its "
          "most common character, as no merge can beat)")
    for seed, clusters in enumerate(likely):
        before = semi_supervised_kmeans(labelled_space, labels, unlabelled_space, len(classes),
                                        clusters.before_merging, seed)
        print(f"  {clusters.before_merging}; {scored(before)}; "
              f"{scored(as_most_common(before, truth))}")

    right = matched_right(truth, likely[0].assignments)
    print("the new characters' images placed right, by drawing source (seed 0): " + ", ".join(
        f"{source} {right[~old & (groups == source)].sum()} of {(~old & (groups == source)).sum()}"
        for source in np.unique(groups[~old])))

    print(f"\n{'features':<22} {'new images whose nearest image is the same character: any source':>66}  "
          f"{'another source':>14}")
    for name, (same, across) in links.items():
        print(f"{name:<22} {same:>66.3f}  {across:>14.3f}")


if __name__ == "__main__":
    main()

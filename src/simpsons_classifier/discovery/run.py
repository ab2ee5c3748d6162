"""``simpsons discover``: the images of a folder that a run rejects as unknown characters, grouped into candidate
new characters beside the characters it knows, copied one folder per group, listed in ``clusters.csv`` and shown
on ``index.html`` (all in ``RUN/discover/`` by default). With ``every_image`` every image is grouped, and those
in new groups are taken as unknown too: the grouping, which sees the folder as a whole, then finds new characters
the rule accepts one image at a time (drawn as the training images were).

Every file below the folder is read once to see whether it is an image; those that are not are counted and listed
with the reason (as ``simpsons predict`` does) and the rest go on. The folder given is only read. The output
folder is replaced only when it holds a previous discover output and nothing else (a renamed cluster folder is
refused rather than deleted).
"""

from __future__ import annotations

import itertools
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from ..data.run_data import RunData
from ..data.scan import Sample, Skipped, check_images, write_skipped
from ..data.split import source_group
from ..evaluation.evaluate import ensure_feature_bank
from ..evaluation.ood_scores import FeatureBank
from ..evaluation.openset import OpenSetDetector, OpenSetRule
from ..evaluation.run_model import sample_outputs
from ..inference.files import find_files
from ..models import PenultimateFeatures, discovery_embedding
from ..run_dir import DiscoverDir, RunDir
from ..tables import read_rows, write_rows
from ..training import LoadedModel, load_model
from ..training.anchored_kmeans import SOURCE_MIN_IMAGES, Clusters, standardised_by_source
from .clustering import discover_clusters
from .detail import AS_THEY_ARE, KnownFeatures, detail_features, features_at
from .page import write_page
from .results import Cluster, Discovery, new_cluster_name

CLUSTERS_HEADER = ("path", "cluster")
UNKNOWN = ""
"""The label of an image to score: none of the model's classes."""


def discover(
    run_dir: str | Path | RunDir, images: str | Path, out_dir: str | Path | None = None, progress: bool = True,
    every_image: bool = False,
) -> Discovery:
    """Score every image below ``images`` with the run's model, cluster those its open-set rule rejects (with
    ``every_image``, all of them), and write the new clusters and the rejected images nearest a known character
    to ``out_dir`` (default ``RUN/discover``)."""
    run, images = RunDir(run_dir), Path(images)
    if reason := run.why_no_model():
        raise FileNotFoundError(f"--run {reason}")
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images}: not a folder")
    out = DiscoverDir(Path(out_dir)) if out_dir is not None else run.discover_dir
    previous = _previous_output(out, images)
    rule = OpenSetRule.read(run.openset)
    if rule is None:
        raise ValueError(f"{run} has no unknown-character rule, so no image would be rejected: "
                         f"`simpsons evaluate --run {run}` calibrates one")
    files = find_files([images])
    readable, skipped = _check_images(files, progress)
    clusters: list[Cluster] = []
    rejected_count, detail = 0, None
    if readable:
        loaded = load_model(run)
        bank = ensure_feature_bank(run, loaded, progress)
        outputs = sample_outputs(loaded, [Sample(p, UNKNOWN) for p in readable], progress=progress, desc="scoring")
        rejected = ~OpenSetDetector(rule, bank).known(outputs.features, outputs.logits).numpy()
        rejected_count = int(rejected.sum())
        to_cluster = np.ones_like(rejected) if every_image else rejected
        if to_cluster.any():
            known_features, embedding = _known_features(run, loaded, bank, progress)
            detail = known_features.detail
            embedded = _to_embed(known_features, readable, to_cluster)
            embedded_paths = [p for p, e in zip(readable, embedded) if e]
            features = features_at(loaded, [Sample(p, UNKNOWN) for p in embedded_paths], detail.longest_side,
                                   progress, desc=f"{len(embedded_paths)} images, {detail.describe()}",
                                   embedding=embedding)
            labelled, features = _sources_standardised(known_features, features, embedded_paths)
            clusters = _clusters(labelled, known_features.labels, bank.classes, features[to_cluster[embedded]],
                                 [p for p, c in zip(readable, to_cluster) if c], rejected[to_cluster], progress)
    discovery = Discovery(str(run), str(images), out, len(files), clusters, skipped, detail, every_image,
                          rejected_count)
    _write(discovery, previous)
    return discovery


def _check_images(files: list[Path], progress: bool) -> tuple[list[str], list[Skipped]]:
    """(readable images, unreadable files with the reason), in the order given."""
    reasons = check_images(files, progress)
    readable = [str(f) for f, reason in zip(files, reasons) if reason is None]
    return readable, [Skipped(str(f), reason) for f, reason in zip(files, reasons) if reason is not None]


def _known_features(run: RunDir, loaded: LoadedModel, bank: FeatureBank, progress: bool
                    ) -> tuple[KnownFeatures, Callable[[nn.Module], nn.Module]]:
    """(the known characters' features, the embedding the unknown images are to be compared by): a sample of the
    training images embedded as new characters are clustered (``discovery/detail.py``); when the training images
    are gone (the dataset moved), the penultimate features of the run's feature bank (the images as they are,
    unmirrored, their sources not known)."""
    training = RunData.read(run).split.train
    if all(Path(s.path).is_file() for s in training):
        return detail_features(loaded, training, progress=progress), discovery_embedding
    return KnownFeatures(AS_THEY_ARE, bank.features.numpy(), bank.labels.numpy(), None), PenultimateFeatures


def _to_embed(known: KnownFeatures, paths: list[str], to_cluster: np.ndarray) -> np.ndarray:
    """Which images at ``paths`` to embed: those to cluster, and every one where a drawing source is to be
    standardised, since its statistics count the images accepted as known too. Where none is (no source of
    ``SOURCE_MIN_IMAGES`` images, as in a folder whose names carry none), the accepted images would change nothing."""
    if known.sources is not None:
        _, counts = np.unique(np.concatenate([known.sources, [source_group(p) for p in paths]]), return_counts=True)
        if (counts >= SOURCE_MIN_IMAGES).any():
            return np.ones(len(paths), dtype=bool)
    return to_cluster


def _sources_standardised(known: KnownFeatures, features: np.ndarray, paths: list[str]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(the known characters' features, ``features`` of the images at ``paths``), each drawing source named in the
    file names standardised over both (``anchored_kmeans.source_standardised``).

    Why: what sets a source apart (a sprite set's resolution, an episode's grading) is shared by all its characters,
    so otherwise a new character's images in two sources fall into two clusters and two new characters in one
    source into one. On ``benchmarks/discover.py`` clustering accuracy (All, mean of three seeds) rises from 0.755
    to 0.823 on the stand-in, 0.706 to 0.734 on fonts and 0.720 to 0.726 on emoji. Every image of the folder
    counts, the known ones too, so that a source's mean is its style rather than the few new characters in it."""
    if known.sources is None:
        return known.features, features
    return standardised_by_source(known.features, features,
                                  np.concatenate([known.sources, [source_group(p) for p in paths]]))


def _clusters(labelled: np.ndarray, labels: np.ndarray, classes: list[str], features: np.ndarray, paths: list[str],
              rejected: np.ndarray, progress: bool) -> list[Cluster]:
    """The clusters of the images at ``paths`` (``features`` compared as ``labelled`` are), named: a known class's
    name (``labels`` index ``classes``), or ``new-NN`` by decreasing size, each new one naming the others that are
    likely the same character. A known class's cluster keeps only the images the rule ``rejected``: the others are
    the images taken as known."""
    present = np.unique(labels)  # a class without training features cannot anchor a cluster
    found: Clusters = discover_clusters(labelled, np.searchsorted(present, labels), features, known=len(present),
                                        progress=progress)
    groups = []
    for index in np.unique(found.assignments):
        members = np.flatnonzero((found.assignments == index) & (rejected | (index >= found.known)))
        if not members.size:
            continue
        name = classes[present[index]] if index < found.known else None
        groups.append((name, [paths[i] for i in members], float(found.similarities[members].mean()), index))
    new = sorted((g for g in groups if g[0] is None), key=lambda g: -len(g[1]))
    known = sorted((g for g in groups if g[0] is not None), key=lambda g: -len(g[1]))
    # A class may itself be named new-NN (a cluster added to the dataset without renaming): its folder keeps it.
    taken = set(classes)
    free_names = (n for n in map(new_cluster_name, itertools.count(1)) if n not in taken)
    named = [(name, paths, tight, found.character_of(index))
             for name, (_, paths, tight, index) in zip(free_names, new)]
    alike = defaultdict(list)  # estimated character: the names of its clusters
    for name, *_, character in named:
        alike[character].append(name)
    return ([Cluster(name, paths, tight, True, tuple(n for n in alike[character] if n != name))
             for name, paths, tight, character in named]
            + [Cluster(name, paths, tight, False) for name, paths, tight, _ in known])


def _previous_output(out: DiscoverDir, images: Path) -> list[Path]:
    """What ``out`` holds of an earlier discover output, to be replaced; refuses an ``out`` that holds anything
    else, or that lies inside the images folder (a second run would find the first one's copies)."""
    resolved_out, resolved_images = out.path.resolve(), images.resolve()
    if resolved_out == resolved_images or resolved_images in resolved_out.parents \
            or resolved_out in resolved_images.parents:
        raise ValueError(f"--out {out.path} and --images {images} overlap: write the clusters outside the folder "
                         "of images")
    if not out.path.exists():
        return []
    if not out.path.is_dir():
        raise FileExistsError(f"--out {out.path} exists and is not a folder")
    entries = {e.name: e for e in out.path.iterdir()}
    if not entries:
        return []
    if not out.clusters.is_file():
        raise FileExistsError(f"--out {out.path} exists and is not a discover output (no {out.clusters.name}): "
                              "give a new or empty folder")
    written = {row.get("cluster", "") for row in read_rows(out.clusters)}
    ours = {out.clusters.name, out.page.name, out.skipped.name} | written
    foreign = sorted(set(entries) - ours)
    if foreign:
        raise FileExistsError(f"--out {out.path} holds {', '.join(foreign[:5])}, which simpsons discover did not "
                              "write (a renamed cluster folder?): move it out first, or give another folder")
    return list(entries.values())


def _write(discovery: Discovery, previous: list[Path]) -> None:
    for entry in previous:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    out = discovery.out.make()
    rows = []
    for cluster in discovery.clusters:
        folder = out.cluster(cluster.name)
        folder.mkdir()
        for path in cluster.paths:
            shutil.copy2(path, _free_name(folder, Path(path).name))
            rows.append((path, cluster.name))
    write_rows(out.clusters, CLUSTERS_HEADER, rows)
    if discovery.skipped:
        write_skipped(out.skipped, discovery.skipped)
    write_page(discovery)


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-2.ext`` ... when images of the same name came from different folders."""
    candidate, number = folder / name, 1
    while candidate.exists():
        number += 1
        candidate = folder / f"{Path(name).stem}-{number}{Path(name).suffix}"
    return candidate

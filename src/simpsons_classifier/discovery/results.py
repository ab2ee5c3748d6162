"""What ``simpsons discover`` found: the typed result the command prints and the page shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.scan import Skipped
from ..run_dir import DiscoverDir
from .detail import Detail

NEW_CLUSTER_PREFIX = "new-"


def counted(number: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def new_cluster_name(rank: int) -> str:
    """``new-01`` for the largest new cluster, ``new-02`` for the next..."""
    return f"{NEW_CLUSTER_PREFIX}{rank:02d}"


@dataclass(frozen=True)
class Cluster:
    name: str
    """A known character's name, or ``new-NN``."""
    paths: list[str]
    """The images (as found in the folder given), in the order found."""
    tightness: float
    """Mean cosine similarity of its images' features to the cluster's centroid: near 1, one tight group."""
    new: bool
    """A candidate new character; else images rejected as unknown that still lie nearest a known character."""
    likely_same: tuple[str, ...] = ()
    """The other new clusters that are likely the same character, in another pose or drawing style."""

    @property
    def size(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Discovery:
    run: str
    images: str
    """The folder searched."""
    out: DiscoverDir
    files: int
    """Files found in ``images``."""
    clusters: list[Cluster] = field(default_factory=list)
    """New clusters first, largest first; then the known characters' clusters, largest first."""
    skipped: list[Skipped] = field(default_factory=list)
    detail: Detail | None = None
    """The detail the images were compared at; None when none was clustered."""
    every_image: bool = False
    """Every image was clustered, not only those the rule rejects, so an image in a new cluster is unknown too."""
    rejected: int = 0
    """Readable images the run's rule rejects as unknown (all of them taken as unknown, some of others too with
    ``every_image``)."""

    @property
    def unknown(self) -> int:
        return sum(c.size for c in self.clusters)

    @property
    def known(self) -> int:
        """Readable images taken as characters the run knows: its rule accepts them (and, with ``every_image``, they
        are grouped with a known character)."""
        return self.readable - self.unknown

    @property
    def readable(self) -> int:
        return self.files - len(self.skipped)

    @property
    def new_clusters(self) -> list[Cluster]:
        return [c for c in self.clusters if c.new]

    @property
    def likely_characters(self) -> int:
        """How many characters the new clusters likely are, those likely the same counted once."""
        return len({frozenset((c.name, *c.likely_same)) for c in self.new_clusters})

    def summary(self) -> str:
        """One sentence on what was found, or why there was nothing to discover."""
        readable = self.readable
        if not self.files:
            return f"{self.images} holds no files: nothing to discover"
        if not readable:
            return f"none of the {self.files} files in {self.images} is a readable image: nothing to discover"
        if not self.unknown:
            return (f"all {readable} readable images in {self.images} look like characters the run knows: "
                    "nothing to discover")
        fallen = self.unknown - sum(c.size for c in self.new_clusters)
        likely = self.likely_characters
        return (f"{self.unknown} of {readable} readable images taken as unknown: "
                f"{counted(len(self.new_clusters), 'candidate new character')}"
                + (f" (likely {likely}: some are one character in another pose or style)"
                   if likely < len(self.new_clusters) else "")
                + (f", {counted(fallen, 'image')} nearest a known character" if fallen else ""))

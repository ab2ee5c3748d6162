"""Which training images an epoch draws: every image once in a shuffled order, or, when the classes are
imbalanced, square-root class-balanced sampling.

The rule (``balance: auto``): sample by class when the largest class has at least ``IMBALANCE_RATIO`` times the
images of the smallest. Each image is then drawn with probability proportional to ``1 / sqrt(n_class)``, so a
class's share of the draws is proportional to ``sqrt(n_class)``: rare characters are seen far more often than
their count alone would give, yet not as often as with fully balanced sampling, which repeats a class of five
images hundreds of times an epoch and overfits it (Kang et al., 2020, "Decoupling Representation and Classifier
for Long-Tailed Recognition", found square-root sampling the better compromise for learning features). Sampling
rather than loss weighting keeps the loss and its label smoothing as they are and gives rare classes more
*distinct augmented views*, not just larger gradients for the same few. An epoch draws as many images as the
training set holds, with replacement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

IMBALANCE_RATIO = 3.0
"""``balance: auto`` samples by class from this ratio of largest to smallest class up."""


def imbalance_ratio(targets: Sequence[int]) -> float:
    counts = Counter(targets).values()
    return max(counts) / min(counts) if counts else 1.0


def should_balance(mode: str, targets: Sequence[int]) -> bool:
    """``balance`` = ``sampler`` or ``none`` as given; ``auto`` by :data:`IMBALANCE_RATIO`."""
    if mode == "auto":
        return imbalance_ratio(targets) >= IMBALANCE_RATIO
    return mode == "sampler"


def sqrt_balanced_weights(targets: Sequence[int]) -> torch.Tensor:
    """Per-image draw weights proportional to ``1 / sqrt(images of its class)``."""
    counts = Counter(targets)
    return torch.tensor([counts[t] ** -0.5 for t in targets], dtype=torch.float64)


class BalancedSampler(Sampler[int]):
    """Square-root class-balanced draws with replacement, the same on every process for a given (seed, epoch);
    each of ``world_size`` processes takes its own share of the draws."""

    def __init__(self, targets: Sequence[int], seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> None:
        self.weights = sqrt_balanced_weights(targets)
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.per_process = -(-len(targets) // world_size)

    def __len__(self) -> int:
        return self.per_process

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        draws = torch.multinomial(self.weights, self.per_process * self.world_size, replacement=True,
                                  generator=generator)
        return iter(draws[self.rank :: self.world_size].tolist())


class CyclingSampler(Sampler[int]):
    """``draws`` indices per process from successive shuffles of ``size`` items (every item once per shuffle), the
    same on every process for a given (seed, epoch), each of ``world_size`` processes taking its own share: the
    unlabelled images of an epoch, which has as many steps as the labelled images give, whatever the size of the
    unlabelled folder. ``DistributedSampler`` makes one pass over a set per epoch, too few or too many here."""

    STREAM = 7_919
    """Added to the epoch's seed so the draws differ from :class:`BalancedSampler`'s."""

    def __init__(self, size: int, draws: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.draws = size, draws
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size

    def __len__(self) -> int:
        return self.draws

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + self.STREAM)
        needed = self.draws * self.world_size
        shuffles = [torch.randperm(self.size, generator=generator) for _ in range(-(-needed // self.size))]
        return iter(torch.cat(shuffles)[:needed][self.rank :: self.world_size].tolist())

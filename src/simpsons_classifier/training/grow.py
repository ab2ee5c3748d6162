"""``init_run`` (``simpsons train --init RUN``): start from another run's best model, its head grown to the new
data's classes, so that adding characters does not mean training from ImageNet again.

The backbone, and the modules that feed only the classifier (EfficientNet's ``conv_head`` and its norm), are the
run's as they are. The classifier gets one row per class of the new data, in the new data's order: a class the
run knows (matched by name) keeps its row, weight and bias, exactly; a new class's row is imprinted
(:func:`imprint_rows`), then fitted beside the kept rows, which stay as they are (:func:`fit_new_rows`); the run's
classes that the new data lacks are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..config import ConfigError
from ..data.scan import DatasetError, class_names
from ..run_dir import RunDir
from .checkpoint import LoadedModel, load_model
from .probe import pre_logit_features


def read_init_run(run_dir: str | Path, backbone: str, data_dir: str | Path) -> LoadedModel:
    """The best model of the run a new run on ``data_dir`` starts from; refuses a missing run, one without
    ``best.pt``, one of another backbone than ``backbone`` (the new run's config), and data whose class folders
    share no name with the run's classes (checked on the folder names, before the data is scanned)."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise FileNotFoundError(f"cannot start from run {run}: no such folder")
    if not run.best.is_file():
        raise FileNotFoundError(f"cannot start from run {run}: it has no {run.best.name} (no epoch has finished yet)")
    source = load_model(run)
    if source.config.backbone != backbone:
        raise ConfigError(
            f"cannot start from run {run}: it was trained with backbone {source.config.backbone}, the config asks "
            f"for {backbone}; use the run's backbone (--set backbone={source.config.backbone}, or --config "
            f"{run.config} for its whole recipe)")
    try:
        HeadPlan(tuple(source.classes), tuple(class_names(data_dir)))
    except ValueError as error:
        raise DatasetError(f"cannot start from run {run} with the data in {data_dir}: {error}") from None
    return source


@dataclass(frozen=True)
class HeadPlan:
    """Where each row of the grown head comes from: ``known`` are the run's classes, ``classes`` the new data's
    (the grown head's order)."""

    known: tuple[str, ...]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.kept:
            raise ValueError(
                f"the data has none of the start run's {len(self.known)} classes ({_listed(self.known)}), so "
                f"there is no head to grow; class folders are matched by name (the data has "
                f"{_listed(self.classes)})")

    @property
    def kept(self) -> list[str]:
        """Classes of the run that the data has: their rows are copied."""
        return [c for c in self.classes if c in self.known]

    @property
    def new(self) -> list[str]:
        """Classes the run does not know: their rows are imprinted."""
        return [c for c in self.classes if c not in self.known]

    @property
    def dropped(self) -> list[str]:
        """Classes of the run that the data lacks: their rows are left out."""
        return [c for c in self.known if c not in self.classes]

    def __str__(self) -> str:
        return (f"{len(self.kept)} classes kept, {len(self.new)} new (imprinted, fitted), "
                f"{len(self.dropped) or 'none'} dropped")


def _listed(names: tuple[str, ...], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f", ... {len(names) - shown} more" if len(names) > shown else "")


def grow_from_run(model: nn.Module, source: LoadedModel, plan: HeadPlan, train_images: DataLoader,
                  device: torch.device, progress: bool = True) -> None:
    """Give ``model`` (built for ``plan.classes``) the source run's backbone, the rows of the classes it knows,
    and rows for the new classes imprinted, then fitted, on ``train_images`` (the un-augmented training images of
    every class and their mirror images, labelled by index into ``plan.classes``: the known classes' images place
    the centre the new rows are measured from and keep the new rows off their images)."""
    load_backbone(model, source.model)
    classifier, known = model.get_classifier(), source.model.get_classifier()
    rows = torch.tensor([plan.classes.index(c) for c in plan.kept])
    from_rows = torch.tensor([source.classes.index(c) for c in plan.kept])
    with torch.no_grad():
        classifier.weight[rows] = known.weight[from_rows].to(classifier.weight.device)
        classifier.bias[rows] = known.bias[from_rows].to(classifier.bias.device)
        if plan.new:
            features, targets = map(torch.as_tensor, pre_logit_features(model, train_images, device, progress))
            new_rows = torch.tensor([plan.classes.index(c) for c in plan.new])
            weight, bias = imprint_rows(features, targets, new_rows, classifier.weight[rows].cpu(),
                                        classifier.bias[rows].cpu())
            weight, bias = fit_new_rows(features, targets, classifier.weight.detach().cpu(),
                                        classifier.bias.detach().cpu(), new_rows, weight, bias)
            classifier.weight[new_rows] = weight.to(classifier.weight.device, classifier.weight.dtype)
            classifier.bias[new_rows] = bias.to(classifier.bias.device, classifier.bias.dtype)


def load_backbone(model: nn.Module, source_model: nn.Module) -> None:
    """Every weight and buffer of ``source_model`` but its classifier into ``model`` (same backbone, loaded
    strictly, so a key that does not match is an error, not a silently fresh layer)."""
    head = f"{model.pretrained_cfg['classifier']}."
    own_classifier = {k: v for k, v in model.state_dict().items() if k.startswith(head)}
    backbone = {k: v for k, v in source_model.state_dict().items() if not k.startswith(head)}
    model.load_state_dict({**backbone, **own_classifier}, strict=True)


def imprint_rows(features: torch.Tensor, targets: torch.Tensor, new_rows: torch.Tensor, kept_weight: torch.Tensor,
                 kept_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight imprinting (Qi et al., 2018, "Low-Shot Learning with Imprinted Weights"), centred: each new class's
    row points from the centre of all classes to the mean of its images' L2-normalised penultimate features, is
    scaled to the mean norm of the kept rows, and its bias is the kept rows' mean bias. ``features``/``targets``:
    the training images of every class; returns (weight, bias) for ``new_rows`` (labels in ``targets``).

    Why not a fresh random row: timm initialises a classifier row small and its bias at zero, so a new class's
    logit starts near zero while a trained row gives its class logits several units high: the new class would
    start far below the known ones, hardly ever predicted, and its large early gradients would pull the shared
    backbone towards it. An imprinted row already points at its class's features and has the known rows' length
    and offset, so it starts as a nearest-class-mean classifier on the same scale as the classes it joins.

    Why centred: the features come after a ReLU-like activation and pooling, all non-negative, so every class's
    mean points roughly the same way (a cosine of 0.57 on average between two characters' mean features, in a
    40-character EfficientNet-Lite0 run on the stand-in), and a row along a raw class mean answers every image
    strongly. The trained rows do not: softmax gradients sum to zero over the classes, so the rows average to
    about zero (there: a mean row of norm 0.014 against rows of 1.4) and respond to how an image differs from the
    others. Imprinted from raw means, 10 new characters took every validation image of the 40 known ones (top-1
    on them 79.2 % -> 0.0 %); centred, 78.3 %, and 86.7 % on the new ones (``benchmarks/grow.py``). The centre is
    the mean of the class means, so that a large class does not pull it towards itself.

    A new class without training images (all of them in validation) gets a zero row and a bias far below the
    others, as the probe head does: never predicted at the start, still learning if images come."""
    unit_features = F.normalize(features.float(), dim=1)
    class_means = {row: unit_features[targets == row].mean(dim=0) for row in targets.unique().tolist()}
    centre = torch.stack(list(class_means.values())).mean(dim=0)
    scale = kept_weight.norm(dim=1).mean()
    weight = torch.zeros(len(new_rows), features.shape[1])
    bias = torch.full((len(new_rows),), float(kept_bias.min()) - 10.0)
    for i, row in enumerate(new_rows.tolist()):
        if row in class_means:
            weight[i] = F.normalize(class_means[row] - centre, dim=0) * scale
            bias[i] = kept_bias.mean()
    return weight, bias


NEW_ROW_FIT_STEPS = 300
NEW_ROW_FIT_LR = 0.01


def fit_new_rows(features: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 new_rows: torch.Tensor, new_weight: torch.Tensor, new_bias: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows ``new_rows`` of the head (``weight``, ``bias``: every row) fitted by cross-entropy over every
    class's training ``features`` (labels ``targets``), starting from ``new_weight``/``new_bias`` (imprinted), the
    other rows held as they are; full-batch Adam, ``NEW_ROW_FIT_STEPS`` steps. A new row without training images
    keeps its start (nothing says where it should point). Returns (weight, bias) for ``new_rows``.

    Why: an imprinted row points at its class's mean, but how strongly it answers other classes' images is a guess
    (the kept rows' mean length and bias), and where a new character looks like a known one it takes that one's
    images. Fitting the new rows alone against the kept ones, on the features already computed for imprinting, sets
    how far each reaches. In the grown head, before any fine-tuning (``benchmarks/grow.py --discovered
    --every-image``: 40 + 10 characters of the stand-in, 24 + 10 glyphs of fonts): the old classes' top-1 85.8 % and
    86.7 % against 73.3 % and 13.3 % imprinted alone (the first runs: 85.8 % and 87.5 %); the new classes' 53.3 %
    and 71.0 % against 66.7 % and 73.0 %, as the old classes' images are no longer theirs to take."""
    fitted = torch.tensor([row in targets for row in new_rows.tolist()])
    rows = new_rows[fitted]
    if not len(rows):
        return new_weight, new_bias
    features, weight, bias = features.float(), weight.float().clone(), bias.float().clone()
    row_weight = new_weight[fitted].float().clone().requires_grad_()
    row_bias = new_bias[fitted].float().clone().requires_grad_()
    optimizer = torch.optim.Adam([row_weight, row_bias], lr=NEW_ROW_FIT_LR)
    with torch.enable_grad():  # the head is grown under no_grad
        for _ in range(NEW_ROW_FIT_STEPS):
            all_weight = weight.index_put((rows,), row_weight)
            all_bias = bias.index_put((rows,), row_bias)
            loss = F.cross_entropy(features @ all_weight.T + all_bias, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    new_weight, new_bias = new_weight.clone(), new_bias.clone()
    new_weight[fitted], new_bias[fitted] = row_weight.detach(), row_bias.detach()
    return new_weight, new_bias

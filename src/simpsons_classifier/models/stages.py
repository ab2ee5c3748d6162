"""The freezing schedule's stages, named once and mapped per backbone family by the family registry.

``head`` is the classifier and the modules that only feed it (EfficientNet's 1×1 ``conv_head`` and its norm);
``last_stage`` is the last feature stage (ResNet ``layer4``, EfficientNet's last block group); ``all`` is
everything.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .families import family_of


def stage_modules(model: nn.Module, stage: str) -> list[nn.Module]:
    if stage == "all":
        return [model]
    if stage == "head":
        return family_of(model).head(model)
    if stage == "last_stage":
        return [family_of(model).last_stage(model)]
    raise ValueError(f"unknown stage {stage!r} (head, last_stage or all)")


def set_trainable_stages(model: nn.Module, stages: Iterable[str]) -> None:
    """Only the parameters of ``stages`` get gradients; BatchNorm layers left frozen stop updating statistics."""
    model.requires_grad_(False)
    for stage in stages:
        for module in stage_modules(model, stage):
            module.requires_grad_(True)
    freeze_frozen_norms(model)


def freeze_frozen_norms(model: nn.Module) -> None:
    """Put BatchNorm layers without trainable parameters in eval mode; call after every ``model.train()``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def param_groups(model: nn.Module, lr: float, backbone_lr_mult: float) -> list[dict]:
    """Head at ``lr``, everything else at ``lr * backbone_lr_mult``; frozen parameters are included so that
    unfreezing later needs no new optimizer."""
    head_ids = {id(p) for m in stage_modules(model, "head") for p in m.parameters()}
    head = [p for p in model.parameters() if id(p) in head_ids]
    body = [p for p in model.parameters() if id(p) not in head_ids]
    return [
        {"params": head, "lr": lr, "name": "head"},
        {"params": body, "lr": lr * backbone_lr_mult, "name": "backbone"},
    ]

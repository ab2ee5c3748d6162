"""Static int8 quantisation of an exported model with onnxruntime, calibrated on a run's own training images.

The choices, for x86-64 CPUs (onnxruntime's guidance in ``quantize_static``'s docstring):

- **QDQ format**, not QOperator: the model keeps float operators between QuantizeLinear/DequantizeLinear pairs,
  and onnxruntime's CPU provider fuses each group into the same integer kernels (QLinearConv, QLinearAdd, QGemm)
  that QOperator would name directly, so the speed is the same; QDQ is the format onnxruntime recommends since
  1.11 and the one other runtimes (TensorRT, OpenVINO, other execution providers) read.
- **uint8 activations, int8 weights (U8S8)**: x86-64 multiplies unsigned by signed bytes (VPMADDUBSW on AVX2,
  VPDPBUSD with VNNI, AMX tiles); activations are asymmetric, so ReLU/ReLU6 outputs use all 256 levels; weights
  are symmetric and **per output channel**, so a channel of small weights is not crushed by its neighbours.
- **reduce_range** (7-bit weights) where the CPU has no VNNI: there VPMADDUBSW adds two u8×s8 products into a
  *saturating* int16, and 255·127·2 = 64770 overflows 32767, so a convolution can be silently wrong; with 7-bit
  weights 255·63·2 = 32130 fits. VNNI (VPDPBUSD) and AMX accumulate in int32 and cannot saturate, so there the
  weights keep all 8 bits, which is measurably closer to the float model (``benchmarks/inference.py --run``).
  The choice is made for the CPU that exports, and recorded in the model's metadata: a model exported on a CPU
  with VNNI is re-exported on the CPU without it that serves it, and the predictor warns when that was missed.
- **The convolutions that read the image stay in float.** The input is an 8-bit image normalised per channel;
  one uint8 scale over all three channels' ranges (about -2.1 to 2.6 for ImageNet's statistics) is 8 % coarser
  than the image's own steps, so quantising it re-rounds every pixel by up to half a grey level: exactly the
  disturbance under which the float model itself changes its top-1 on 4-6 % of the demo's validation images
  (``benchmarks/inference.py --run``). Keeping the first convolution in float raised int8's top-1 agreement with
  the float model from 92.7 to 94.7 % and from 92.0 to 95.3 % on two demo runs, for a layer that is about 1 % of
  EfficientNet-Lite0's multiply-adds.
- **MinMax calibration**: the observed range of each activation over the calibration images; a few hundred
  settle them, and it keeps only a minimum and a maximum per tensor. Percentile and entropy calibration keep every
  activation of every image (5 GB for 64 images of EfficientNet-Lite0) and were no closer to the float model on
  the demo run.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch.utils.data import DataLoader

from ..augment import build_eval_transform
from ..data.dataset import ImageDataset
from ..data.run_data import RunData
from ..training import LoadedModel

QUANT_FORMAT = QuantFormat.QDQ
ACTIVATION_TYPE = QuantType.QUInt8
WEIGHT_TYPE = QuantType.QInt8
PER_CHANNEL = True
CALIBRATION_METHOD = CalibrationMethod.MinMax
CALIBRATION_BATCH = 32
PREPROCESSED_FILE = "preprocessed.onnx"
CPUINFO = Path("/proc/cpuinfo")
NO_SATURATION_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""CPU flags of the byte dot-product instructions that accumulate in int32."""


@dataclass(frozen=True)
class Quantisation:
    """How an int8 model was made: stored in its metadata, so a reader knows what it is running."""

    format: str
    activations: str
    weights: str
    per_channel: bool
    reduce_range: bool
    calibration: str
    calibration_images: int
    float_nodes: list[str] = field(default_factory=list)
    """Operators kept in float: the convolutions that read the image."""


def quantize_model(fp32_path: str | Path, int8_path: str | Path, input_name: str,
                   batches: Iterable[np.ndarray], reduce_range: bool | None = None) -> Quantisation:
    """Write the int8 version of the ONNX model at ``fp32_path`` to ``int8_path``, its activation ranges
    calibrated on ``batches`` (N×3×S×S float32, preprocessed exactly as at inference). ``reduce_range``: 7-bit
    weights; by default, unless this CPU is known to multiply bytes without saturating."""
    if reduce_range is None:
        reduce_range = cpu_saturates() is not False
    reader = _Batches(input_name, batches)
    with tempfile.TemporaryDirectory(prefix="quantize.") as scratch:
        # Shape inference and onnxruntime's basic graph optimisations first, as onnxruntime asks: every tensor
        # gets a shape, so every convolution can be quantised. Symbolic shape inference is for transformers.
        preprocessed = Path(scratch) / PREPROCESSED_FILE
        quant_pre_process(str(fp32_path), str(preprocessed), skip_symbolic_shape=True)
        float_nodes = input_convolutions(preprocessed, input_name)
        quantize_static(
            str(preprocessed), str(int8_path), reader,
            quant_format=QUANT_FORMAT,
            per_channel=PER_CHANNEL,
            reduce_range=reduce_range,
            activation_type=ACTIVATION_TYPE,
            weight_type=WEIGHT_TYPE,
            calibrate_method=CALIBRATION_METHOD,
            nodes_to_exclude=float_nodes,
        )
    return Quantisation(
        format=QUANT_FORMAT.name,
        activations=f"{ACTIVATION_TYPE.name} asymmetric, per tensor",
        weights=f"{WEIGHT_TYPE.name} symmetric, per {'output channel' if PER_CHANNEL else 'tensor'}",
        per_channel=PER_CHANNEL,
        reduce_range=reduce_range,
        calibration=CALIBRATION_METHOD.name,
        calibration_images=reader.images,
        float_nodes=float_nodes,
    )


def input_convolutions(model_path: str | Path, input_name: str) -> list[str]:
    """The names of the convolutions that read the model's input directly (kept in float: module docstring)."""
    return [node.name for node in onnx.load(str(model_path)).graph.node
            if node.op_type == "Conv" and input_name in node.input]


def cpu_saturates() -> bool | None:
    """Whether this CPU's u8×s8 products can saturate (x86-64 without VNNI or AMX); None when its flags cannot be
    read (not Linux, or not x86-64)."""
    if not CPUINFO.is_file():
        return None
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            return not set(line.partition(":")[2].split()) & set(NO_SATURATION_FLAGS)
    return None


def warn_if_saturating(quantisation: Quantisation, model_file: str | Path) -> None:
    """Warn when a model quantised with full 8-bit weights runs on a CPU where they can saturate."""
    if not quantisation.reduce_range and cpu_saturates():
        warnings.warn(f"{model_file} was quantised on a CPU with VNNI, and this one has none, so some of its "
                      "convolutions can saturate: run  simpsons export --int8  on this machine", stacklevel=2)


def calibration_batches(run_dir: str | Path, loaded: LoadedModel, count: int) -> Iterator[np.ndarray]:
    """``count`` of the run's training images (drawn with its seed; all of them when it has fewer),
    preprocessed as in evaluation and prediction, in batches."""
    train = RunData.read(run_dir).split.train
    picked = np.random.default_rng(loaded.config.seed).permutation(len(train))[:count]
    dataset = ImageDataset([train[i] for i in sorted(picked)], loaded.classes,
                           build_eval_transform(loaded.config.image_size, loaded.mean, loaded.std),
                           decode_size=loaded.config.image_size)
    for images, _ in DataLoader(dataset, batch_size=CALIBRATION_BATCH):
        yield images.numpy()


class _Batches(CalibrationDataReader):
    """onnxruntime's calibration input: one ``{input name: batch}`` per call, None when done."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = iter(batches)
        self.images = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.images += len(batch)
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

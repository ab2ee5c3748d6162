"""Training in two processes with torchrun on the gloo backend, as a multi-GPU run does, on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

from simpsons_classifier.config import Config

PROCESSES = 2


def torchrun_train(data: Path, out: Path, config: Config, port: int, *extra: str) -> subprocess.CompletedProcess:
    """``simpsons train`` in :data:`PROCESSES` processes, ``config`` given key by key as ``--set`` (its machine-specific
    keys left out), one thread a process; ``extra``: more arguments of ``train``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(PROCESSES),
               "--master_port", str(port), "-m", "simpsons_classifier", "train", "--data", str(data), "--out", str(out),
               *extra]
    for key, value in config.to_dict().items():
        if key not in ("val_groups", "background_dir", "unlabeled_dir"):
            command += ["--set", f"{key}={'null' if value is None else value}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)

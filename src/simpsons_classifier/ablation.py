"""``simpsons ablate``: train several recipes on the same images and compare them in one table.

Each config file becomes the run ``OUT/<file stem>``, with the same ``--set`` overrides on top (to put every
recipe on the same backbone and budget). The first run makes the split; the others reuse its split.csv, so
the numbers differ by recipe only. A run folder that already holds a run is resumed (a finished one is left
as it is), so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, ConfigError
from .report.compare import write_comparison
from .run_dir import RunDir
from .training import resume, train
from .workflow import finish_run

ABLATION_NAME = "ablation"


def ablate(
    data_dir: str | Path, config_files: list[str | Path], overrides: list[str], out_dir: str | Path,
    progress: bool = True,
) -> tuple[Path, Path, str]:
    """Train (or finish) every run and finish it as ``simpsons train`` does (calibration, evaluation with the
    robustness score, report), then write ``OUT/ablation.md`` and ``.html``."""
    names = [Path(f).stem for f in config_files]
    if len(set(names)) != len(names):
        raise ConfigError(f"--configs {names}: the run folders are named after the files, so their names must differ")
    out_dir = Path(out_dir)
    run_dirs = [RunDir(out_dir / name) for name in names]
    configs = [Config.load(f, overrides) for f in config_files]  # all validated before hours of training
    for run_dir, config in zip(run_dirs, configs):
        print(f"\n== {run_dir.name} ==", flush=True)
        if run_dir.holds_run():
            resume(run_dir, progress=progress)
        else:
            shared_split = run_dirs[0].split if run_dir != run_dirs[0] else None
            train(config, data_dir, run_dir, progress=progress, split_file=shared_split)
        finish_run(run_dir, progress=progress)
    return write_comparison(run_dirs, out_dir, ABLATION_NAME)

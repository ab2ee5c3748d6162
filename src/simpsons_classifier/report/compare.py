"""The table that compares finished runs (``simpsons compare``, and the end of ``simpsons ablate``).

One row per run: model version, top-1 with its 95 % interval, how the run differs from the first one image by
image (the images only it gets right, only the first gets right, and McNemar's p-value: a small one says the
difference is not the luck of the split), top-5, loss, macro-F1, top-1 per drawing source, and the config keys
whose values differ between the runs (keys all runs share are listed once under the table). A second table
lists the classes whose accuracy (recall) differs most between the runs: a pooled number can hide that one
recipe wins some classes and loses others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..evaluation import EvalResult, ensure_evaluated
from ..evaluation.uncertainty import format_interval, paired_difference
from ..run_dir import EvalDir, RunDir
from ..storage import make_folder, write_text_atomic
from ..tables import read_rows
from ..training.curves import best_checkpoint_name, read_metrics
from .templates import template

CLASSES_SHOWN = 12
TEMPLATE = template("compare.html")


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self.rows])


@dataclass
class Comparison:
    runs: Table
    shared: str
    classes: Table


def compare_runs(run_dirs: list[str | Path]) -> Comparison:
    run_dirs = [RunDir(r) for r in run_dirs]
    eval_dirs = [ensure_evaluated(r) for r in run_dirs]
    configs = [Config.load(r.config).to_dict() for r in run_dirs]
    metrics = [EvalResult.read(e.metrics) for e in eval_dirs]
    varying = [k for k in configs[0] if any(c[k] != configs[0][k] for c in configs)]
    reference = Config().to_dict()
    shared = ", ".join(f"{k}={v}" for k, v in configs[0].items() if k not in varying and v != reference[k])
    groups = list(dict.fromkeys(g for m in metrics for g in m.per_group_top1))
    right = [_right_by_image(e) for e in eval_dirs]
    versus = ["–", *[_versus(right[0], r) for r in right[1:]]]
    runs = Table(
        ["model version", "top-1", "95 % interval", f"vs {run_dirs[0].name}, image by image", "top-5", "loss",
         "macro-F1", *[f"top-1 {g}" for g in groups], "key differences"],
        [[_version(r, c), _pct(m.top1), format_interval(m.top1_interval), v, _pct(m.top5), f"{m.loss:.3f}",
          f"{m.macro_f1:.3f}", *[_pct(m.per_group_top1[g][1]) if g in m.per_group_top1 else "–" for g in groups],
          ", ".join(f"{k}={c[k]}" for k in varying) or "–"]
         for r, c, m, v in zip(run_dirs, configs, metrics, versus)],
    )
    return Comparison(runs, shared, _class_table(run_dirs, eval_dirs))


def _class_table(run_dirs: list[RunDir], eval_dirs: list[EvalDir]) -> Table:
    """Per-class recall of every run, the classes with the largest spread between runs first."""
    recalls = [{row["class"]: float(row["recall"]) for row in read_rows(e.per_class)} for e in eval_dirs]
    classes = [c for c in recalls[0] if all(c in r for r in recalls)]
    spread = {c: max(r[c] for r in recalls) - min(r[c] for r in recalls) for c in classes}
    shown = sorted((c for c in classes if spread[c] > 0), key=lambda c: -spread[c])[:CLASSES_SHOWN]
    return Table(["class", *[f"recall {r.name}" for r in run_dirs]],
                 [[c, *[_pct(r[c]) for r in recalls]] for c in shown])


def _right_by_image(eval_dir: EvalDir) -> dict[str, bool]:
    """Whether the run got each validation image right, by path."""
    return {row["path"]: row["true"] == row["predicted"] for row in read_rows(eval_dir.predictions)}


def _versus(first: dict[str, bool], other: dict[str, bool]) -> str:
    difference = paired_difference(first, other)
    return difference.describe() if difference else "no image in common"


def _version(run_dir: RunDir, config: dict) -> str:
    history = read_metrics(run_dir.metrics)
    best = best_checkpoint_name(history, config["epochs"])
    return f"{run_dir.name} ({config['backbone']}, {config['epochs']} epochs, best: {best})"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def write_comparison(run_dirs: list[str | Path], out_dir: str | Path, name: str) -> tuple[Path, Path, str]:
    """``OUT/NAME.md`` and ``OUT/NAME.html``; returns both paths and the markdown."""
    comparison = compare_runs(run_dirs)
    markdown = comparison.runs.markdown() + "\n"
    if comparison.shared:
        markdown += f"\nAll runs: {comparison.shared}.\n"
    if comparison.classes.rows:
        markdown += "\nClasses whose accuracy differs most between the runs:\n\n" + comparison.classes.markdown() + "\n"
    out_dir = make_folder(out_dir)
    md_path, html_path = out_dir / f"{name}.md", out_dir / f"{name}.html"
    write_text_atomic(md_path, markdown)
    write_text_atomic(html_path, TEMPLATE.render(title=name, comparison=comparison,
                                                 runs=[str(Path(r).resolve()) for r in run_dirs]))
    return md_path, html_path, markdown

"""``RUN/report.html``: one self-contained page (every image a data URI) that reads top to bottom: config,
dataset, curves, metrics, per-class table, confusion, unknown characters (the rule, and how it does when classes
were held out), confused pairs, top losses, Grad-CAM, kernels, feature maps.

Evaluation and explanation pictures are made again first when missing or older than ``best.pt``.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import datetime
from pathlib import Path

from ..config import Config
from ..data.images import load_rgb
from ..data.run_data import RunData
from ..evaluation import EvalResult, ensure_evaluated
from ..evaluation.openset import TARGET_TPR, OpenSetRule
from ..evaluation.uncertainty import format_interval
from ..explain import CONFUSED_PAIRS_SHOWN, explain_run
from ..run_dir import RunDir
from ..storage import write_text_atomic
from ..tables import read_rows
from ..training.curves import best_checkpoint_name, read_metrics, unlabeled_epochs
from .charts import class_counts_png
from .inline import data_uri, file_data_uri
from .templates import template

TOP_LOSSES = 12
SKIPPED_SHOWN = 20
THUMBNAIL_PX = 160
TEMPLATE = template("template.html")


def build_report(run_dir: str | Path | RunDir) -> Path:
    run = RunDir(run_dir)
    evaluated = ensure_evaluated(run)
    explained = run.explain_dir
    if not run.is_newer_than_best(explained.gradcam_classes):
        explain_run(run)
    config = Config.load(run.config)
    data = RunData.read(run)
    result = EvalResult.read(evaluated.metrics)
    history = read_metrics(run.metrics)
    train_counts = Counter(s.label for s in data.split.train)
    per_class = sorted(read_rows(evaluated.per_class), key=lambda r: float(r["f1"]))
    pairs = read_rows(evaluated.confused_pairs)[:CONFUSED_PAIRS_SHOWN]
    pair_pictures = [explained.pair(i) for i in range(1, len(pairs) + 1)]
    reference = Config().to_dict()
    html = TEMPLATE.render(
        run_name=run.name,
        run_dir=str(run.path.resolve()),
        written=datetime.now().strftime("%Y-%m-%d %H:%M"),
        pct=lambda x: f"{100 * x:.1f} %",
        interval=format_interval,
        config=config,
        differences=config.differences(),
        config_rows=[{"key": k, "value": v, "reference": reference[k], "differs": v != reference[k]}
                     for k, v in config.to_dict().items()],
        classes=data.classes,
        summary=data.summary,
        counts_chart=data_uri(class_counts_png(data.classes, data.split)),
        skipped=read_rows(run.skipped)[:SKIPPED_SHOWN] if run.skipped.is_file() else [],
        best_checkpoint=best_checkpoint_name(history, config.epochs),
        curves=file_data_uri(run.curves),
        unlabeled=unlabeled_epochs(history, config.epochs),
        metrics=result,
        groups=[(g, n, top1) for g, (n, top1) in result.per_group_top1.items()],
        per_class=[{**row, "train": train_counts[row["class"]]} for row in per_class],
        confusion=file_data_uri(evaluated.confusion_png),
        openset=result.openset,
        openset_picture=file_data_uri(evaluated.openset_scores),
        rule=OpenSetRule.read(run.openset),  # shown alone when no characters were held out to measure it on
        target_tpr=TARGET_TPR,
        discover_page=(run.discover_dir.page.relative_to(run.path).as_posix() if run.discover_dir.page.is_file()
                       else None),
        detector_page=(run.detector.report.relative_to(run.path).as_posix() if run.detector.report.is_file()
                       else None),
        pairs=pairs,
        pair_pictures=[file_data_uri(p) for p in pair_pictures if p.is_file()],
        top_losses=_top_losses(evaluated.predictions),
        gradcam_classes=file_data_uri(explained.gradcam_classes),
        kernels=[(title, file_data_uri(explained.kernels(kind))) for title, kind in
                 (("3×3 filters of the last block", "3x3"), ("1×1 filters of the last block", "1x1"))
                 if explained.kernels(kind).is_file()],
        feature_maps=[file_data_uri(p) for p in explained.all_feature_maps()],
    )
    write_text_atomic(run.report, html)  # a full disk is one error naming the file; the old report stays
    return run.report


def _top_losses(predictions: Path) -> list[dict]:
    wrong = [r for r in read_rows(predictions) if r["true"] != r["predicted"]]
    wrong.sort(key=lambda r: -float(r["probability"]))
    return [
        {"name": Path(r["path"]).name, "true": r["true"], "predicted": r["predicted"],
         "probability": float(r["probability"]), "true_probability": float(r["true_probability"]),
         "thumbnail": _thumbnail(r["path"])}
        for r in wrong[:TOP_LOSSES]
    ]


def _thumbnail(path: str) -> str:
    image = load_rgb(path)
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return data_uri(buffer.getvalue())

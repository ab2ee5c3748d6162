"""``RUN/report.html``: one self-contained page (every image a data URI) that reads top to bottom: config,
dataset, curves, metrics, per-class table, confusion, confused pairs, top losses, Grad-CAM, kernels, feature maps.

Evaluation and explanation pictures are made again first when missing or older than ``best.pt``.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import jinja2

from ..config import Config
from ..data.images import load_rgb
from ..data.run_data import RunData
from ..explain.run import CONFUSED_PAIRS_SHOWN, EXPLAIN_DIR, PAIR_PICTURE, ensure_evaluated, explain_run, read_rows
from ..training.curves import read_metrics
from .charts import class_counts_png

REPORT_FILE = "report.html"
TOP_LOSSES = 12
SKIPPED_SHOWN = 20
THUMBNAIL_PX = 160
JPEG_ABOVE_BYTES = 200_000
JPEG_QUALITY = 88
TEMPLATE = jinja2.Environment(
    loader=jinja2.PackageLoader("simpsons_classifier", "report"), autoescape=True, undefined=jinja2.StrictUndefined
).get_template("template.html")


def build_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    eval_dir = ensure_evaluated(run_dir)
    explain_dir = run_dir / EXPLAIN_DIR
    if not _newer(explain_dir / "gradcam_classes.png", run_dir / "best.pt"):
        explain_run(run_dir)
    config = Config.load(run_dir / "config.yaml")
    data = RunData.read(run_dir)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    history = read_metrics(run_dir / "metrics.csv")
    train_counts = Counter(s.label for s in data.split.train)
    per_class = sorted(read_rows(eval_dir / "per_class.csv"), key=lambda r: float(r["f1"]))
    pairs = read_rows(eval_dir / "confused_pairs.csv")[:CONFUSED_PAIRS_SHOWN]
    pair_pictures = [explain_dir / PAIR_PICTURE.format(i) for i in range(1, len(pairs) + 1)]
    reference = Config().to_dict()
    html = TEMPLATE.render(
        run_name=run_dir.name,
        run_dir=str(run_dir.resolve()),
        written=datetime.now().strftime("%Y-%m-%d %H:%M"),
        pct=lambda x: f"{100 * x:.1f} %",
        config=config,
        differences=config.differences(),
        config_rows=[{"key": k, "value": v, "reference": reference[k], "differs": v != reference[k]}
                     for k, v in config.to_dict().items()],
        classes=data.classes,
        summary=data.summary,
        counts_chart=_data_uri(class_counts_png(data.classes, data.split)),
        skipped=read_rows(run_dir / "skipped.csv")[:SKIPPED_SHOWN] if (run_dir / "skipped.csv").is_file() else [],
        best_epoch=1 + int(max(history, key=lambda r: r["val_top1"])["epoch"]) if history else "?",
        curves=_file_uri(run_dir / "curves.png"),
        metrics=metrics,
        groups=[(g, n, top1) for g, (n, top1) in metrics.get("per_group_top1", {}).items()],
        per_class=[{**row, "train": train_counts[row["class"]]} for row in per_class],
        confusion=_file_uri(eval_dir / "confusion_matrix.png"),
        pairs=pairs,
        pair_pictures=[_file_uri(p) for p in pair_pictures if p.is_file()],
        top_losses=_top_losses(eval_dir / "predictions.csv"),
        gradcam_classes=_file_uri(explain_dir / "gradcam_classes.png"),
        kernels=[(title, _file_uri(explain_dir / name)) for title, name in
                 (("3×3 filters of the last block", "kernels_3x3.png"),
                  ("1×1 filters of the last block", "kernels_1x1.png")) if (explain_dir / name).is_file()],
        feature_maps=[_file_uri(p) for p in sorted(explain_dir.glob("feature_maps_*.png"))],
    )
    path = run_dir / REPORT_FILE
    path.write_text(html)
    return path


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
    return _data_uri(buffer.getvalue())


def _newer(path: Path, than: Path) -> bool:
    return path.is_file() and path.stat().st_mtime >= than.stat().st_mtime


def _data_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _file_uri(path: Path) -> str:
    """A PNG as a data URI; large ones (heat-map overlays, big matrices) as JPEG, a fifth of the size."""
    if not path.is_file():
        return ""
    if path.stat().st_size <= JPEG_ABOVE_BYTES:
        return _data_uri(path.read_bytes())
    buffer = io.BytesIO()
    load_rgb(path).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return _data_uri(buffer.getvalue(), "jpeg")

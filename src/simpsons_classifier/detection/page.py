"""``RUN/detector/report.html``: the detector's scores, held-out scenes with boxes, per-class AP and training, in
one self-contained page; the run's main report links to it."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from ..report.inline import file_data_uri
from ..report.templates import template
from ..run_dir import RunDir
from ..storage import write_text_atomic
from ..tables import read_rows
from .config import DetectConfig
from .predictor import DEFAULT_MIN_SCORE
from .results import DetectionEvaluation


def write_detection_page(run_dir, evaluation: DetectionEvaluation) -> Path:
    run = RunDir(run_dir)
    training = read_rows(run.detector.metrics) if run.detector.metrics.is_file() else []
    html = template("detection.html").render(
        run_name=run.name,
        written=datetime.now().strftime("%Y-%m-%d %H:%M"),
        config=DetectConfig.load(run.detector.config),
        scores=asdict(evaluation),
        min_score=DEFAULT_MIN_SCORE,
        per_class=sorted(evaluation.per_class_ap.items(), key=lambda item: item[1]),
        picture=file_data_uri(run.eval_dir().detections),
        training_columns=list(training[0]) if training else [],
        training=training,
    )
    write_text_atomic(run.detector.report, html)
    return run.detector.report

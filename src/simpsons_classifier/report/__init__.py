"""The run report (one self-contained HTML page) and the table that compares runs."""

from .build import build_report

__all__ = ["build_report"]

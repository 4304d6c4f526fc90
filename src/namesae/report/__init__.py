"""Plots and a static HTML report / feature browser of a namesae run."""

from namesae.report.site import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]

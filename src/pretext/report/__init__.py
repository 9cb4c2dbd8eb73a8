"""Pictures and the self-contained HTML report; both read a run directory only."""

from pretext.report.html import write_report

__all__ = ["write_report"]

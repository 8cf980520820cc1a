"""The daily report's settings ([report])."""

from __future__ import annotations

from nightwarden.lib.settings import Count, Section


class ReportSettings(Section):
    period_hours: Count = 24

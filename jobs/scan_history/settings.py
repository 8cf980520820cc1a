"""The scan-history analysis's settings ([history])."""

from __future__ import annotations

from nightwarden.lib.settings import Count, Section, default_list


class HistorySettings(Section):
    period_hours: Count = 24
    top: Count = 20  # rows in the top tables
    import_files: list[str] = default_list()  # PortSentry history files read at every run (1.2 or 2.x)
    subnet_min_sources: Count = 5  # a /24 with this many scanning sources is worth blocking
    repeat_blocks: Count = 3  # blocked this often (all time): a permanent-block candidate
    candidate_danger: Count = 4  # danger level from which a source is a candidate too
    charts: bool = True

"""The run's as-of date as the DAG passes it (``{{ ds }}``, a string) or a caller gives it (a date)."""

from __future__ import annotations

from datetime import date


def parse_as_of(as_of: str | date) -> date:
    return as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)[:10])

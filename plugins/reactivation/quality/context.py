"""Open the committed Great Expectations file context, bound to one run's warehouse and parameters.

The context under ``expectations/gx/`` names its connection string ``${WAREHOUSE_URL}``
and its two output folders as substitution variables; nothing secret is committed.
``open_context`` fills them in through GX's runtime environment (which wins over
the process environment), so the committed files are never rewritten.

The run's parameters reach the committed SQL as PostgreSQL session settings on the
gate's own connections (libpq ``options``: ``-c reactivation.as_of=...``): the
queries stay constant text, read ``current_setting('reactivation.as_of')`` and
never the wall clock. (A transaction-pooling proxy in front of the warehouse would
drop session settings; connect the gate to PostgreSQL directly.)
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from reactivation.quality.suites import CONTEXT_ROOT

log = logging.getLogger(__name__)

# The checks filter on run-time settings and window results the planner cannot estimate; when it guesses
# one row it picks a nested loop that re-scans a table per row (seen: 12 s instead of 0.1 s at 20,000
# patients). Every check is a batch scan, so hash and merge joins are always the right plan here.
PLANNER_SETTINGS = {"enable_nestloop": "off"}


@dataclass(frozen=True)
class RunParameters:
    """What one gate run judges against: its as-of date and the two tunable limits."""

    as_of: date
    max_extract_age_days: int = 3
    volume_tolerance_pct: float = 50.0

    def session_settings(self) -> dict[str, str]:
        """What the gate's connections set: the run's parameters and the planner settings."""
        return {
            "reactivation.as_of": self.as_of.isoformat(),
            "reactivation.max_extract_age_days": str(self.max_extract_age_days),
            "reactivation.volume_tolerance_pct": f"{self.volume_tolerance_pct:g}",
            **PLANNER_SETTINGS,
        }


def quiet_gx() -> None:
    """No usage statistics, no progress bars, no chatter from GX in the task log."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="great_expectations")
    warnings.filterwarnings("ignore", message=".*great_expectations.*")


def sqlalchemy_url(url: str, settings: dict[str, str]) -> str:
    """The warehouse URL as SQLAlchemy wants it (psycopg 3 driver) with the session settings in ``options``."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        raise ValueError(f"the quality gate needs a PostgreSQL warehouse URL (got scheme {parts.scheme!r})")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = [query.pop("options", "").strip()] + [f"-c {name}={value}" for name, value in settings.items()]
    query["options"] = " ".join(o for o in options if o)
    query.setdefault("application_name", "reactivation-quality-gate")
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, urlencode(query), ""))


def open_context(url: str, params: RunParameters, *, state_dir: Path, root: Path = CONTEXT_ROOT):
    """The file context at ``root``, its datasource bound to ``url`` for this run."""
    quiet_gx()
    import great_expectations as gx

    import reactivation.quality.expectations  # noqa: F401  (registers the suites' custom expectation type)

    results_dir = state_dir / "gx" / "validations"
    docs_dir = state_dir / "data_docs"
    results_dir.mkdir(parents=True, exist_ok=True)
    docs_dir.mkdir(parents=True, exist_ok=True)
    runtime = {
        "WAREHOUSE_URL": sqlalchemy_url(url, params.session_settings()),
        "REACTIVATION_GX_RESULTS_DIR": str(results_dir),
        "REACTIVATION_DATA_DOCS_DIR": str(docs_dir),
    }
    return gx.get_context(mode="file", project_root_dir=str(root), runtime_environment=runtime)

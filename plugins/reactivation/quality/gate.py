"""The quality gate: run the committed checkpoint, store every result, decide what is blocked, build Data Docs.

One checkpoint (``reactivation_gate``) validates every suite against table assets on
the warehouse; every expectation is SQL that PostgreSQL evaluates (row counts and
aggregates come back, never the tables). Results keep counts only
(``partial_unexpected_count: 0``, no unexpected rows), so neither the stored
results nor Data Docs can carry a patient value.

A failed ``critical`` expectation blocks sends in its scope: the failing locations
when its meta says ``scope: location`` (its query names them), every location when
``global`` or when a check could not run at all. ``warning`` failures are reported
and stored, and block nothing. The decision goes to ``ops.gate_decisions``; outreach
planning reads it through ``blocked_scope``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import statistics
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from reactivation.quality import store
from reactivation.quality.context import RunParameters, open_context
from reactivation.quality.suites import CHECKPOINT, QUERY_EXPECTATION, RESULT_FORMAT, volume_checks
from reactivation.settings import SettingsError, get_settings

log = logging.getLogger(__name__)

GLOBAL = "__global__"  # key of the global reasons in blocked_scope's dict
DEFAULT_VOLUME_TOLERANCE_PCT = 50.0
DEFAULT_MAX_EXTRACT_AGE_DAYS = 3
VOLUME_HISTORY_RUNS = 5
QUERY_EXPECTATIONS = {QUERY_EXPECTATION, "unexpected_rows_expectation"}


@dataclass(frozen=True)
class Finding:
    """One expectation's outcome, or one failing location's share of it."""

    suite: str
    expectation: str
    severity: str
    scope: str
    success: bool
    observed_value: float | int | Decimal | None = None
    location_id: str | None = None
    reason: str | None = None


@dataclass
class GateDecision:
    dag_run_id: str
    as_of: date
    parameters: RunParameters
    findings: list[Finding] = field(default_factory=list)
    global_reasons: list[str] = field(default_factory=list)
    blocked_locations: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    data_docs: Path | None = None

    @property
    def global_blocked(self) -> bool:
        return bool(self.global_reasons)

    @property
    def blocked(self) -> bool:
        return self.global_blocked or bool(self.blocked_locations)

    @property
    def expectations(self) -> list[Finding]:
        """The headline finding of each expectation (details carry a reason)."""
        return [f for f in self.findings if f.reason is None]

    def headline(self) -> str:
        critical = sum(1 for f in self.expectations if not f.success and f.severity == "critical")
        warning = sum(1 for f in self.expectations if not f.success and f.severity == "warning")
        if self.global_blocked:
            state = "BLOCKED everywhere"
        elif self.blocked_locations:
            state = f"BLOCKED at {len(self.blocked_locations)} of {len(self.locations)} location(s)"
        else:
            state = "passed"
        return (
            f"quality gate {state}: {len(self.expectations)} expectations, "
            f"{critical} critical and {warning} warning failure(s)"
        )

    def summary(self) -> dict:
        """Count-only summary (ids, counts, plain-words reasons that carry no patient value)."""
        return {
            "headline": self.headline(),
            "dag_run_id": self.dag_run_id,
            "as_of": self.as_of.isoformat(),
            "blocked": self.blocked,
            "global_blocked": self.global_blocked,
            "blocked_locations": sorted(self.blocked_locations),
            "locations": len(self.locations),
            "expectations": len(self.expectations),
            "critical_failures": sum(1 for f in self.expectations if not f.success and f.severity == "critical"),
            "warnings": len(self.warnings),
            "reasons": {GLOBAL: self.global_reasons, **self.blocked_locations} if self.blocked else {},
            "seconds": round(self.seconds, 1),
            "data_docs": str(self.data_docs) if self.data_docs else None,
        }


def _env_number(name: str, default: float, *, minimum: float, cast=float):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return cast(default)
    try:
        value = cast(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number (got {raw!r})") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum:g} (got {raw!r})")
    return value


def run_parameters(as_of: date) -> RunParameters:
    """The run's parameters from REACTIVATION_MAX_EXTRACT_AGE_DAYS and REACTIVATION_VOLUME_TOLERANCE_PCT."""
    return RunParameters(
        as_of=as_of,
        max_extract_age_days=_env_number(
            "REACTIVATION_MAX_EXTRACT_AGE_DAYS", DEFAULT_MAX_EXTRACT_AGE_DAYS, minimum=0, cast=int
        ),
        volume_tolerance_pct=_env_number(
            "REACTIVATION_VOLUME_TOLERANCE_PCT", DEFAULT_VOLUME_TOLERANCE_PCT, minimum=0, cast=float
        ),
    )


def volume_bounds(url: str, params: RunParameters) -> dict[str, int | None]:
    """Suite parameters ``<table>_min_rows`` / ``<table>_max_rows``: the median of the previous successful
    runs ± the tolerance; no bound (0 / None) before the first successful run."""
    bounds: dict[str, int | None] = {}
    for suite, check in volume_checks():
        prefix = check.kwargs["min_value"]["$PARAMETER"].removesuffix("_min_rows")
        history = store.volume_history(
            url, suite=suite.name, expectation=check.name, before=params.as_of, runs=VOLUME_HISTORY_RUNS
        )
        if not history:
            bounds[f"{prefix}_min_rows"], bounds[f"{prefix}_max_rows"] = 0, None
            continue
        median = statistics.median(history)
        share = params.volume_tolerance_pct / 100
        bounds[f"{prefix}_min_rows"] = max(0, math.floor(median * (1 - share)))
        bounds[f"{prefix}_max_rows"] = math.ceil(median * (1 + share))
    return bounds


class GateError(RuntimeError):
    """The gate cannot run as configured (the message says what to fix)."""


def _result_format(value) -> dict:
    if isinstance(value, dict):
        return {k: (v.value if hasattr(v, "value") else v) for k, v in value.items()}
    return {"result_format": getattr(value, "value", value)}


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def _number(value) -> str:
    if isinstance(value, Decimal | float) and value == int(value):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _sentence(template: str, values: dict, *, suite: str, name: str) -> str:
    text = string.Formatter().vformat(template, (), _Blank({k: _number(v) for k, v in values.items()}))
    return f"{text[:1].upper()}{text[1:]} ({suite}: {name})."


def _error_summary(result) -> str:
    """What went wrong when a check could not run: the error class and, for a missing table or column, its name.

    Never the raw message in general: a database error can quote a data value.
    """
    for info in (result.exception_info or {}).values():
        message = (info.get("exception_message") or "") if isinstance(info, dict) else ""
        if missing := re.search(r'(relation|column) "([\w.]+)" does not exist', message):
            return f"{missing.group(1)} {missing.group(2)} does not exist"
        if kind := re.search(r"^\((\w+(?:\.\w+)*)\)", message):
            return kind.group(1).rsplit(".", 1)[-1]
    return "unexpected error"


def _raised(result) -> bool:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return True
    return any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())


def _observed(result) -> float | int | None:
    payload = result.result or {}
    value = payload.get("observed_value")
    if value is None and "unexpected_count" in payload:
        value = payload["unexpected_count"]
    return value if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else None


def _findings_for(context, suite_name: str, result, params: RunParameters, expectation_parameters: dict) -> list:
    """One headline finding per expectation, then one detail finding (with a reason) per failing location,
    or a single global detail when the failure has no location."""
    config = result.expectation_config
    meta = config.meta or {}
    name = meta.get("name") or config.type
    severity = "warning" if str(meta.get("severity") or config.severity).lower().endswith("warning") else "critical"
    scope = meta.get("scope", "global")
    observed = _observed(result)
    headline = Finding(suite_name, name, severity, scope, bool(result.success), observed)
    if result.success:
        return [headline]

    def detail(reason: str, value=observed, location: str | None = None) -> Finding:
        return Finding(suite_name, name, severity, scope if location else "global", False, value, location, reason)

    if _raised(result):
        return [headline, detail(f"The check could not run: {_error_summary(result)} ({suite_name}: {name}).")]
    template = meta.get("reason") or "the check failed"
    values: dict = {
        "observed": observed,
        "max_extract_age_days": params.max_extract_age_days,
        "volume_tolerance_pct": params.volume_tolerance_pct,
    }
    if config.type not in QUERY_EXPECTATIONS:
        for bound, unbounded in (("min_value", 0), ("max_value", "any")):
            raw = (config.kwargs or {}).get(bound)
            value = expectation_parameters.get(raw["$PARAMETER"]) if isinstance(raw, dict) else raw
            values[bound] = unbounded if value is None else value
        return [headline, detail(_sentence(template, values, suite=suite_name, name=name))]

    # The query names what failed (ids and counts only); fetch its rows to word the reasons.
    validation_definition = context.validation_definitions.get(suite_name)
    expectation = next(e for e in validation_definition.suite.expectations if str(e.id) == str(config.id))
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # GX draws a progress bar here whatever the config says
            rows = validation_definition.get_unexpected_rows(expectation)
    except Exception as err:  # the failure stands; without its locations it is treated as global (fail safe)
        log.warning("could not list the failing locations of %s: %s", name, type(err).__name__)
        rows = []
    findings = [headline]
    for row in rows:
        location = row.get("location_id") if scope == "location" else None
        reason = _sentence(template, {**values, **row}, suite=suite_name, name=name)
        findings.append(detail(reason, row.get("observed"), None if location is None else str(location)))
    if len(findings) == 1:  # failed, yet no row names a location: still say what failed, everywhere
        findings.append(detail(_sentence(template, values, suite=suite_name, name=name)))
    return findings


def decide(findings: list[Finding]) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(global reasons, reasons per blocked location, warnings) from the failed findings."""
    global_reasons: list[str] = []
    per_location: dict[str, list[str]] = {}
    warnings: list[str] = []
    for finding in findings:
        if finding.success or finding.reason is None:
            continue
        where = f"{finding.location_id}: " if finding.location_id else ""
        if finding.severity == "warning":
            warnings.append(where + finding.reason)
        elif finding.location_id is None:
            global_reasons.append(finding.reason)
        else:
            per_location.setdefault(finding.location_id, []).append(finding.reason)
    return global_reasons, per_location, warnings


def run_gate_check(
    url: str,
    *,
    as_of: date,
    dag_run_id: str,
    params: RunParameters | None = None,
    state_dir: Path | None = None,
    build_docs: bool = True,
) -> GateDecision:
    """Validate, store results and decision, build Data Docs. Raises only when the gate itself cannot run."""
    started = lap = time.monotonic()
    timings: dict[str, float] = {}

    def step(name: str) -> None:
        nonlocal lap
        now = time.monotonic()
        timings[name] = round(now - lap, 2)
        lap = now

    params = params or run_parameters(as_of)
    state_dir = state_dir or get_settings().state_dir
    store.ensure_quality_schema(url)
    expectation_parameters = volume_bounds(url, params)
    step("volume bounds")

    from great_expectations.core.run_identifier import RunIdentifier

    context = open_context(url, params, state_dir=state_dir)
    step("open context")
    checkpoint = context.checkpoints.get(CHECKPOINT)
    if _result_format(checkpoint.result_format) != RESULT_FORMAT:
        raise GateError(
            f"the committed checkpoint {CHECKPOINT} asks for result_format {checkpoint.result_format!r}; "
            f"the gate runs only with {RESULT_FORMAT} (no unexpected values, which could carry PHI)"
        )
    run_id = RunIdentifier(run_name=dag_run_id, run_time=datetime.now(UTC))
    result = checkpoint.run(expectation_parameters=expectation_parameters, run_id=run_id)
    step("checkpoint")

    decision = GateDecision(dag_run_id=dag_run_id, as_of=as_of, parameters=params, timings=timings)
    for validation in result.run_results.values():
        suite_name = validation.suite_name
        for expectation_result in validation.results:
            decision.findings.extend(
                _findings_for(context, suite_name, expectation_result, params, expectation_parameters)
            )
    decision.global_reasons, decision.blocked_locations, decision.warnings = decide(decision.findings)
    step("failing locations")
    decision.locations = sorted(set(store.known_locations(url)) | set(decision.blocked_locations))

    # One row per expectation, plus one per failing location (a global detail repeats its headline).
    results = [
        store.ResultRow(f.suite, f.expectation, f.severity, f.success, f.observed_value, f.location_id)
        for f in decision.findings
        if f.reason is None or f.location_id is not None
    ]
    rows = [store.DecisionRow(None, decision.global_blocked, tuple(decision.global_reasons), tuple(decision.warnings))]
    rows += [
        store.DecisionRow(
            location, location in decision.blocked_locations, tuple(decision.blocked_locations.get(location, ()))
        )
        for location in decision.locations
    ]
    store.save_run(url, dag_run_id=dag_run_id, as_of=as_of, results=results, decisions=rows)
    step("store")

    if build_docs:
        context.build_data_docs(resource_identifiers=list(result.run_results))
        decision.data_docs = state_dir / "data_docs" / "index.html"
        step("data docs")
    decision.seconds = time.monotonic() - started
    log.info(
        "quality gate run=%s as_of=%s blocked=%s global=%s blocked_locations=%d warnings=%d seconds=%.1f",
        dag_run_id,
        as_of.isoformat(),
        decision.blocked,
        decision.global_blocked,
        len(decision.blocked_locations),
        len(decision.warnings),
        decision.seconds,
    )
    return decision


def blocked_scope(url: str, dag_run_id: str) -> tuple[bool, dict[str, list[str]]]:
    """What the gate blocked for a run: ``(global_blocked, {location_id: reasons})``.

    When blocked globally the dict also holds the global reasons under ``"__global__"``.
    No recorded decision for the run means nothing may be sent (fail safe).
    """
    import psycopg

    from reactivation.warehouse import connect

    try:
        with connect(url) as conn:
            rows = conn.execute(
                "select location_id, blocked, reasons from ops.gate_decisions where dag_run_id = %s",
                (dag_run_id,),
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        rows = []
    if not rows:
        return True, {GLOBAL: ["the quality gate recorded no decision for this run, so nothing may be sent"]}
    blocked_locations = {location: list(reasons) for location, blocked, reasons in rows if location and blocked}
    global_rows = [(blocked, reasons) for location, blocked, reasons in rows if location is None]
    global_blocked = any(blocked for blocked, _ in global_rows)
    if global_blocked:
        blocked_locations[GLOBAL] = [r for blocked, reasons in global_rows if blocked for r in reasons]
    return global_blocked, blocked_locations

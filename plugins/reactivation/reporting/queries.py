"""What the leadership report reads: counts from the reporting marts and the ``ops`` schema.

Every query returns counts, rates, codes (rule, reason, channel, location ids) and
dates; none selects a name, phone, email, address, birth date or person id. The
reporting marts are built by dbt and may not exist yet, or may name a column a
little differently: each query first looks the table and its columns up in
``information_schema`` (which also hides what the reader's role may not read)
and returns a ``Section`` that says "no data yet" and why, instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

WEEKS_SHOWN = 12
MAX_SERIES = 6  # lines in one chart; the smaller ones are pooled
MAX_LOCATION_ROWS = 15
NIGHTS_SHOWN = 30

WEEK_COLUMNS = ("week", "week_start", "week_starting", "week_of")
AS_OF_COLUMNS = ("as_of", "as_of_date", "run_as_of", "run_date", "night")
QUALITY_NIGHT_COLUMNS = ("run_as_of", "as_of", "as_of_date")
FUNNEL_STAGES = (
    ("Eligible", ("eligible", "eligible_n", "eligible_people")),
    ("Not suppressed", ("candidates", "candidates_n")),
    ("Contacted", ("contacted", "contacted_n")),
    ("Delivered", ("delivered", "delivered_n")),
    ("Replied", ("replied", "replied_n", "responded")),
    ("Booked", ("booked", "booked_n", "bookings")),
    ("Showed", ("showed", "showed_n", "shows", "completed")),
)
# Column candidates by the stage's first (preferred) column name: {"booked": ("booked", "booked_n", ...)}.
STAGE_COLUMNS = {names[0]: names for _, names in FUNNEL_STAGES}
# The location comparison's columns worth a leadership table, in this order, when the mart has them.
LOCATION_COLUMNS = (
    "eligible_people_tonight",
    "candidates_tonight",
    "contacted",
    "delivered",
    "booked",
    "showed",
    "opted_out",
    "delivery_rate",
    "booked_rate",
    "show_rate",
    "opt_out_rate",
    "booked_rate_vs_network",
    "booked_rate_rank",
)
REASON_LABELS = {
    "opted_out": "Opted out",
    "deceased": "Deceased",
    "future_appointment": "Already has an appointment",
    "seen_recently": "Seen recently",
    "hold": "On hold / do not contact",
    "no_valid_contact": "No valid phone or email",
    "attempt_cap_reached": "Attempt limit reached",
    "resting": "Resting between episodes",
    "frequency_cap": "Over the frequency cap",
    "quiet_hours": "Outside contact hours",
    "holdout": "In the holdout group",
}


@dataclass
class Section:
    """One part of the report: its data, or the reason there is none yet."""

    key: str
    source: str
    data: Any = None
    note: str | None = None
    columns: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return self.data is not None and self.note is None


class Catalog:
    """The tables and columns the current role can see in the schemas the report reads."""

    def __init__(self, conn: psycopg.Connection, schemas: Sequence[str] = ("marts", "ops")) -> None:
        rows = conn.execute(
            """select table_schema, table_name, column_name, data_type
               from information_schema.columns
               where table_schema = any(%s)
               order by table_schema, table_name, ordinal_position""",
            (list(schemas),),
        ).fetchall()
        self._columns: dict[tuple[str, str], dict[str, str]] = {}
        for schema, table, column, data_type in rows:
            self._columns.setdefault((schema, table), {})[column] = data_type

    def columns(self, schema: str, table: str) -> dict[str, str]:
        return self._columns.get((schema, table), {})

    def has(self, schema: str, table: str, *columns: str) -> bool:
        found = self.columns(schema, table)
        return bool(found) and all(c in found for c in columns)

    def pick(self, schema: str, table: str, candidates: Iterable[str]) -> str | None:
        found = self.columns(schema, table)
        return next((c for c in candidates if c in found), None)

    def numeric_columns(self, schema: str, table: str) -> list[str]:
        numeric = {"integer", "bigint", "smallint", "numeric", "double precision", "real"}
        return [c for c, t in self.columns(schema, table).items() if t in numeric]


def _missing(key: str, source: str, what: str | None = None) -> Section:
    note = (what or f"{source} has not been built yet").rstrip(".") + "."
    if not note.startswith(("marts.", "ops.")):  # a table's name keeps its case
        note = note[:1].upper() + note[1:]
    return Section(key, source, note=note)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _rate(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def _safely(conn: psycopg.Connection, key: str, source: str, build) -> Section:
    """Run one section's queries; a database error becomes a note, never a failed report."""
    try:
        return build()
    except psycopg.Error as err:
        # The SQLSTATE and class only: a message could quote a value.
        log.warning("report section %s could not be read (%s)", key, err.sqlstate or type(err).__name__)
        if not conn.autocommit:
            conn.rollback()
        return Section(key, source, note=f"{source} could not be read ({err.sqlstate or type(err).__name__}).")


def _ident(*names: str) -> sql.Identifier:
    return sql.Identifier(*names)


def _window(cat: Catalog, table: str, as_of: date, days: int) -> tuple[str | None, sql.Composable, tuple]:
    """The week column of a weekly mart and a filter for the weeks up to the report's night."""
    week = cat.pick("marts", table, WEEK_COLUMNS)
    if week is None:
        return None, sql.SQL("true"), ()
    return (
        week,
        sql.SQL("{week} <= %s and {week} > %s").format(week=_ident(week)),
        (as_of, as_of - timedelta(days=days)),
    )


def funnel(conn: psycopg.Connection, cat: Catalog, as_of: date, weeks: int = WEEKS_SHOWN) -> Section:
    """The funnel stages summed over the weeks up to the night (marts.rpt_reactivation_funnel)."""
    table, source = "rpt_reactivation_funnel", "marts.rpt_reactivation_funnel"
    if not cat.columns("marts", table):
        return _missing("funnel", source)

    def build() -> Section:
        stages = [(label, cat.pick("marts", table, names)) for label, names in FUNNEL_STAGES]
        present = [(label, col) for label, col in stages if col]
        if not present:
            return _missing("funnel", source, f"{source} has none of the funnel's columns")
        week, where, params = _window(cat, table, as_of, weeks * 7)
        query = sql.SQL("select {sums} from marts.{table} where {where}").format(
            sums=sql.SQL(", ").join(sql.SQL("sum({})").format(_ident(col)) for _, col in present),
            table=_ident(table),
            where=where,
        )
        values = conn.execute(query, params).fetchone()
        by_label = {label: _plain(v) for (label, _), v in zip(present, values, strict=True)}
        if all(v is None for v in by_label.values()):
            return _missing("funnel", source, f"{source} has no rows for these weeks")
        data = [(label, by_label.get(label)) for label, col in stages if col]
        return Section("funnel", source, data={"stages": data, "weeks": weeks if week else None})

    return _safely(conn, "funnel", source, build)


def rates_over_time(
    conn: psycopg.Connection,
    cat: Catalog,
    as_of: date,
    *,
    dimension: str,
    numerator: str,
    denominator: str = "contacted",
    weeks: int = WEEKS_SHOWN,
) -> Section:
    """A weekly rate (numerator ÷ denominator) per location or channel from the funnel mart."""
    table, source = "rpt_reactivation_funnel", "marts.rpt_reactivation_funnel"
    key = f"{numerator}_rate_by_{dimension}"
    if not cat.columns("marts", table):
        return _missing(key, source)

    def build() -> Section:
        week, where, params = _window(cat, table, as_of, weeks * 7)
        num = cat.pick("marts", table, STAGE_COLUMNS[numerator])
        den = cat.pick("marts", table, STAGE_COLUMNS[denominator])
        if week is None or num is None or den is None or dimension not in cat.columns("marts", table):
            return _missing(key, source, f"{source} lacks a week, {dimension} or count column")
        query = sql.SQL(
            "select {week}, {dim}, sum({num}), sum({den}) from marts.{table} where {where} group by 1, 2 order by 1, 2"
        ).format(
            week=_ident(week), dim=_ident(dimension), num=_ident(num), den=_ident(den), table=_ident(table), where=where
        )
        rows = conn.execute(query, params).fetchall()
        if not rows:
            return _missing(key, source, f"{source} has no rows for these weeks")
        weeks_seen = sorted({r[0] for r in rows})
        index = {w: i for i, w in enumerate(weeks_seen)}
        named = [(w, str(dim) if dim is not None else "unknown", float(n or 0), float(d or 0)) for w, dim, n, d in rows]
        totals: dict[str, float] = {}
        for _, name, _, d in named:
            totals[name] = totals.get(name, 0.0) + d
        kept, other = _top_names(totals)
        sums: dict[str, list[list[float]]] = {}
        for w, name, n, d in named:
            if totals[name] <= 0:
                continue
            label = name if name in kept else other
            cell = sums.setdefault(label, [[0.0, 0.0] for _ in weeks_seen])[index[w]]
            cell[0] += n
            cell[1] += d
        series = {name: [_rate(n, d) for n, d in cells] for name, cells in sums.items()}
        series = {name: values for name, values in series.items() if any(v is not None for v in values)}
        if not series:
            return _missing(key, source, f"nobody was {denominator} in these weeks, so there is no rate yet")
        return Section(key, source, data={"x": [_label(w) for w in weeks_seen], "series": series})

    return _safely(conn, key, source, build)


def _top_names(totals: dict[str, float], limit: int = MAX_SERIES) -> tuple[set[str], str]:
    """The largest series by total (those with a total above zero), and the label the rest are pooled under."""
    ranked = sorted((name for name, total in totals.items() if total > 0), key=lambda n: (-totals[n], n))
    if len(ranked) <= limit:
        return set(ranked), "other"
    kept = set(ranked[: limit - 1])
    return kept, f"{len(ranked) - len(kept)} others"


def _label(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def holdout_lift(conn: psycopg.Connection, cat: Catalog, as_of: date) -> Section:
    """Booked rate of the contacted arm against the holdout, per rule (marts.rpt_holdout_lift)."""
    table, source = "rpt_holdout_lift", "marts.rpt_holdout_lift"
    if not cat.columns("marts", table):
        return _missing("lift", source)

    def build() -> Section:
        cols = cat.columns("marts", table)
        rule = cat.pick("marts", table, ("rule_id", "rule", "care_gap_rule"))
        lift = cat.pick("marts", table, ("lift", "lift_pp", "booked_rate_lift", "absolute_lift"))
        if rule is None or lift is None:
            return _missing("lift", source, f"{source} lacks a rule or lift column")
        low = cat.pick("marts", table, ("ci_low", "lift_ci95_low", "ci95_low", "lift_ci_low"))
        high = cat.pick("marts", table, ("ci_high", "lift_ci95_high", "ci95_high", "lift_ci_high"))
        extra = ("holdout_n", "contacted_n", "holdout_booked_rate", "contacted_booked_rate", "is_significant")
        wanted = [rule, lift, *(c for c in (low, high) if c), *(c for c in extra if c in cols)]
        night = cat.pick("marts", table, AS_OF_COLUMNS)
        if night:
            where = sql.SQL("{n} = (select max({n}) from marts.{t} where {n} <= %s)").format(
                n=_ident(night), t=_ident(table)
            )
            params: tuple = (as_of,)
        else:
            where, params = sql.SQL("true"), ()
        query = sql.SQL("select {cols} from marts.{table} where {where} order by 1").format(
            cols=sql.SQL(", ").join(_ident(c) for c in wanted), table=_ident(table), where=where
        )
        rows = [dict(zip(wanted, map(_plain, r), strict=True)) for r in conn.execute(query, params).fetchall()]
        if not rows:
            return _missing("lift", source, f"{source} has no rows")
        for r in rows:
            r["rule_id"], r["lift"] = r.get(rule), r.get(lift)
            r["ci_low"], r["ci_high"] = r.get(low) if low else None, r.get(high) if high else None
        return Section("lift", source, data=rows)

    return _safely(conn, "lift", source, build)


def suppression_reasons(conn: psycopg.Connection, cat: Catalog, as_of: date, top: int = 8) -> Section:
    """Why people with an open care gap were not contacted tonight: people per reason, most common first."""
    source = "marts.outreach_suppressions"
    if cat.has("marts", "outreach_suppressions", "reason_code", "person_id"):

        def build() -> Section:
            night = cat.pick("marts", "outreach_suppressions", AS_OF_COLUMNS)
            where = sql.SQL("{} = %s").format(_ident(night)) if night else sql.SQL("true")
            query = sql.SQL(
                "select reason_code, count(distinct person_id) from marts.outreach_suppressions where {where} "
                "group by 1 order by 2 desc, 1"
            ).format(where=where)
            rows = conn.execute(query, (as_of,) if night else ()).fetchall()
            if not rows:
                return _missing("suppressions", source, f"{source} has no rows for {as_of.isoformat()}")
            items = [(REASON_LABELS.get(code, str(code).replace("_", " ")), int(n)) for code, n in rows]
            if len(items) > top:
                items = [*items[: top - 1], ("Other reasons", sum(n for _, n in items[top - 1 :]))]
            return Section("suppressions", source, data=items)

        return _safely(conn, "suppressions", source, build)
    return suppression_reasons_from_funnel(conn, cat, as_of, top)


def suppression_reasons_from_funnel(conn: psycopg.Connection, cat: Catalog, as_of: date, top: int) -> Section:
    """Fallback: the funnel mart's ``suppressed_<reason>`` columns, summed over the night's week."""
    table, source = "rpt_reactivation_funnel", "marts.rpt_reactivation_funnel"
    reason_cols = [c for c in cat.columns("marts", table) if c.startswith("suppressed_") and not c.endswith("_rate")]
    if not reason_cols:
        return _missing("suppressions", source, "no suppression reasons have been built")

    def build() -> Section:
        _, where, params = _window(cat, table, as_of, 7)
        query = sql.SQL("select {sums} from marts.{table} where {where}").format(
            sums=sql.SQL(", ").join(sql.SQL("sum({})").format(_ident(c)) for c in reason_cols),
            table=_ident(table),
            where=where,
        )
        values = conn.execute(query, params).fetchone()
        items = [
            (REASON_LABELS.get(c.removeprefix("suppressed_"), c.removeprefix("suppressed_").replace("_", " ")), int(v))
            for c, v in zip(reason_cols, values, strict=True)
            if v
        ]
        items.sort(key=lambda item: (-item[1], item[0]))
        if not items:
            return _missing("suppressions", source, f"{source} has no suppressions for this week")
        return Section("suppressions", source, data=items[:top])

    return _safely(conn, "suppressions", source, build)


def quality_trend(conn: psycopg.Connection, cat: Catalog, as_of: date, nights: int = NIGHTS_SHOWN) -> Section:
    """Failed expectations per night by severity: the trend mart, else the gate's own results."""
    table = "rpt_data_quality_trend"
    night = cat.pick("marts", table, QUALITY_NIGHT_COLUMNS)
    critical = cat.pick("marts", table, ("critical_failures", "critical_failed", "critical"))
    warning = cat.pick("marts", table, ("warning_failures", "warning_failed", "warnings"))
    if night and critical and warning:
        source = f"marts.{table}"

        def build_mart() -> Section:
            query = sql.SQL(
                "select {night}, sum({critical}), sum({warning}) from marts.{table} "
                "where {night} <= %s and {night} > %s group by 1 order by 1"
            ).format(night=_ident(night), critical=_ident(critical), warning=_ident(warning), table=_ident(table))
            rows = conn.execute(query, (as_of, as_of - timedelta(days=nights))).fetchall()
            return _trend_section(source, rows)

        return _safely(conn, "quality", source, build_mart)
    source = "ops.quality_results"
    if not cat.has("ops", "quality_results", "as_of", "severity", "success", "dag_run_id"):
        return _missing("quality", source, "the quality gate has not run")

    def build_ops() -> Section:
        rows = conn.execute(
            """with latest_run as (
                   select distinct on (as_of) as_of, dag_run_id
                   from ops.quality_results
                   where as_of <= %s and as_of > %s
                   order by as_of, recorded_at desc
               )
               select r.as_of,
                      count(*) filter (where not r.success and r.severity = 'critical'),
                      count(*) filter (where not r.success and r.severity = 'warning')
               from ops.quality_results as r
               join latest_run using (as_of, dag_run_id)
               where r.location_id is null
               group by 1 order by 1""",
            (as_of, as_of - timedelta(days=nights)),
        ).fetchall()
        return _trend_section(source, rows)

    return _safely(conn, "quality", source, build_ops)


def _trend_section(source: str, rows: list[tuple]) -> Section:
    if not rows:
        return _missing("quality", source, f"{source} has no nights in this window")
    return Section(
        "quality",
        source,
        data={
            "x": [_label(r[0]) for r in rows],
            "series": {
                "Critical failures": [int(r[1] or 0) for r in rows],
                "Warnings": [int(r[2] or 0) for r in rows],
            },
        },
    )


def opt_outs_and_complaints(conn: psycopg.Connection, cat: Catalog, as_of: date, weeks: int = WEEKS_SHOWN) -> Section:
    table, source = "rpt_opt_outs_and_complaints", "marts.rpt_opt_outs_and_complaints"
    opt_outs = cat.pick("marts", table, ("opt_outs", "opt_out_count", "opted_out"))
    complaints = cat.pick("marts", table, ("complaints", "complaint_count", "spam_reports"))
    week = cat.pick("marts", table, WEEK_COLUMNS)
    if not cat.columns("marts", table):
        return _missing("opt_outs", source)
    if not (opt_outs and week):
        return _missing("opt_outs", source, f"{source} lacks a week or opt-out column")

    def build() -> Section:
        _, where, params = _window(cat, table, as_of, weeks * 7)
        sums = [sql.SQL("sum({})").format(_ident(opt_outs))]
        if complaints:
            sums.append(sql.SQL("sum({})").format(_ident(complaints)))
        query = sql.SQL("select {week}, {sums} from marts.{table} where {where} group by 1 order by 1").format(
            week=_ident(week), sums=sql.SQL(", ").join(sums), table=_ident(table), where=where
        )
        rows = conn.execute(query, params).fetchall()
        if not rows:
            return _missing("opt_outs", source, f"{source} has no rows for these weeks")
        series = {"Opt-outs": [int(r[1] or 0) for r in rows]}
        if complaints:
            series["Complaints"] = [int(r[2] or 0) for r in rows]
        return Section("opt_outs", source, data={"x": [_label(r[0]) for r in rows], "series": series})

    return _safely(conn, "opt_outs", source, build)


def bookings_weekly(conn: psycopg.Connection, cat: Catalog, as_of: date, weeks: int = WEEKS_SHOWN) -> Section:
    table, source = "rpt_bookings_weekly", "marts.rpt_bookings_weekly"
    if not cat.columns("marts", table):
        return _missing("bookings", source)
    week = cat.pick("marts", table, WEEK_COLUMNS)
    bookings = cat.pick("marts", table, ("bookings", "booked", "bookings_n"))
    location = cat.pick("marts", table, ("location_id", "location"))
    if not (week and bookings):
        return _missing("bookings", source, f"{source} lacks a week or bookings column")

    def build() -> Section:
        _, where, params = _window(cat, table, as_of, weeks * 7)
        dim = _ident(location) if location else sql.SQL("'all locations'")
        query = sql.SQL(
            "select {week}, {dim}, sum({bookings}) from marts.{table} where {where} group by 1, 2 order by 1, 2"
        ).format(week=_ident(week), dim=dim, bookings=_ident(bookings), table=_ident(table), where=where)
        rows = conn.execute(query, params).fetchall()
        if not rows:
            return _missing("bookings", source, f"{source} has no rows for these weeks")
        weeks_seen = sorted({r[0] for r in rows})
        index = {w: i for i, w in enumerate(weeks_seen)}
        totals: dict[str, float] = {}
        for _, dim_value, n in rows:
            totals[str(dim_value)] = totals.get(str(dim_value), 0.0) + float(n or 0)
        kept, other = _top_names(totals)
        series: dict[str, list[float | None]] = {}
        for w, dim_value, n in rows:
            name = str(dim_value)
            if totals[name] <= 0:
                continue
            values = series.setdefault(name if name in kept else other, [0] * len(weeks_seen))
            values[index[w]] = (values[index[w]] or 0) + int(n or 0)
        if not series:
            return _missing("bookings", source, "no bookings in these weeks")
        return Section("bookings", source, data={"x": [_label(w) for w in weeks_seen], "series": series})

    return _safely(conn, "bookings", source, build)


def location_comparison(conn: psycopg.Connection, cat: Catalog, as_of: date) -> Section:
    """The location comparison mart as a table: the location and its numeric columns only."""
    table, source = "rpt_location_comparison", "marts.rpt_location_comparison"
    if not cat.columns("marts", table):
        return _missing("locations", source)
    location = cat.pick("marts", table, ("location_id", "location"))
    numeric = [c for c in cat.numeric_columns("marts", table) if c != location]
    preferred = [c for c in LOCATION_COLUMNS if c in numeric]
    numeric = preferred or numeric[:12]
    if location is None or not numeric:
        return _missing("locations", source, f"{source} lacks a location or numeric column")

    def build() -> Section:
        period = cat.pick("marts", table, (*AS_OF_COLUMNS, *WEEK_COLUMNS))
        if period:
            where = sql.SQL("{p} = (select max({p}) from marts.{t} where {p} <= %s)").format(
                p=_ident(period), t=_ident(table)
            )
            params: tuple = (as_of,)
        else:
            where, params = sql.SQL("true"), ()
        query = sql.SQL("select {cols} from marts.{table} where {where} order by 1").format(
            cols=sql.SQL(", ").join(_ident(c) for c in [location, *numeric]), table=_ident(table), where=where
        )
        rows = [[_plain(v) for v in r] for r in conn.execute(query, params).fetchall()]
        active = [r for r in rows if any(v for v in r[1:])]
        if not active:
            return _missing("locations", source, f"{source} has no location with any activity yet")
        # Busiest first: by the first count column (tonight's eligible people, when the mart has it).
        active.sort(key=lambda r: (-(r[1] or 0), str(r[0])))
        shown = active[:MAX_LOCATION_ROWS]
        hidden = len(rows) - len(shown)
        note_rows = f"{len(shown)} of {len(rows)} locations, busiest first" if hidden else None
        return Section("locations", source, data={"rows": shown, "caption": note_rows}, columns=[location, *numeric])

    return _safely(conn, "locations", source, build)


def show_rate(conn: psycopg.Connection, cat: Catalog, as_of: date, weeks: int = WEEKS_SHOWN) -> float | None:
    """Shows ÷ (shows + no-shows) over the weeks up to the night, from the funnel mart (None when not built).

    Without a no-show column, shows ÷ bookings.
    """
    table = "rpt_reactivation_funnel"
    booked = cat.pick("marts", table, STAGE_COLUMNS["booked"])
    showed = cat.pick("marts", table, STAGE_COLUMNS["showed"])
    no_shows = cat.pick("marts", table, ("no_shows", "no_show", "noshows"))
    if not showed or not (no_shows or booked):
        return None
    _, where, params = _window(cat, table, as_of, weeks * 7)
    denominator = (
        sql.SQL("sum({s}) + sum({n})").format(s=_ident(showed), n=_ident(no_shows))
        if no_shows
        else sql.SQL("sum({})").format(_ident(booked))
    )
    try:
        row = conn.execute(
            sql.SQL("select sum({s}), {d} from marts.{t} where {w}").format(
                s=_ident(showed), d=denominator, t=_ident(table), w=where
            ),
            params,
        ).fetchone()
    except psycopg.Error:
        if not conn.autocommit:
            conn.rollback()
        return None
    return _rate(row[0], row[1])


def built_for(conn: psycopg.Connection, cat: Catalog, table: str) -> date | None:
    """The as-of date a mart was last built for (its ``as_of`` column), or None."""
    column = cat.pick("marts", table, ("as_of", "as_of_date"))
    if column is None:
        return None
    try:
        row = conn.execute(sql.SQL("select max({}) from marts.{}").format(_ident(column), _ident(table))).fetchone()
    except psycopg.Error:
        return None
    return row[0] if row and isinstance(row[0], date) else None

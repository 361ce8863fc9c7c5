"""The nightly leadership report: one self-contained HTML file.

Inline CSS, the system font stack, inline SVG charts (``charts``), no script and
no external resource of any kind; a Content-Security-Policy in the page itself
forbids the browser from fetching anything, so a later edit that adds one shows
up as a console error in the report's browser test rather than as a silent leak.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from reactivation import __version__
from reactivation.reporting import charts, queries
from reactivation.reporting.headline import HEADLINE_LABELS, format_value, night_numbers, open_report_connection
from reactivation.settings import get_settings

TEMPLATES = Path(__file__).with_name("templates")

DEFINITIONS = (
    ("Eligible", "People with an open care gap on the night (marts.care_gaps)."),
    (
        "Contacted",
        "People whose message from the night's batches the provider accepted, or who were put on a staff call list.",
    ),
    ("Delivered", "Of those, people with a delivery event from the provider, or a call that reached them."),
    ("Booked", "Outreach episodes that ended in a booking on the night (seen in the practice's extract or a call)."),
    ("Show rate", "Shows ÷ bookings over the last 12 weeks (reporting mart)."),
    ("Opt-outs", "People messaged on the night who opted out afterwards (STOP, unsubscribe, spam report)."),
    ("Blocked batches", "The night's batches the quality gate blocked: nothing in them was sent."),
    (
        "Lift",
        "Booked rate of the contacted group minus that of the randomised holdout, in percentage points, with "
        "its 95% interval; an interval that crosses zero is not conclusive.",
    ),
)


LOCATION_HEADERS = {
    "location_id": "Location",
    "eligible_people_tonight": "Eligible tonight",
    "candidates_tonight": "Not suppressed tonight",
    "opted_out": "Opted out",
    "booked_rate_vs_network": "Booked rate vs network",
    "booked_rate_rank": "Rank (booked rate)",
}


@dataclass
class Block:
    title: str
    source: str
    chart: charts.Chart | None = None
    note: str | None = None


@dataclass
class Group:
    id: str
    title: str
    lede: str
    blocks: list[Block]


def _block(title: str, section: queries.Section, make_chart) -> Block:
    if not section.available:
        return Block(title, section.source, note=section.note)
    return Block(title, section.source, chart=make_chart(section.data))


FUNNEL_BASES = {
    "Not suppressed": "Eligible",
    "Delivered": "Contacted",
    "Replied": "Delivered",
    "Booked": "Contacted",
    "Showed": "Booked",
}


def _funnel_block(section: queries.Section) -> Block:
    def make(data: dict) -> charts.Chart:
        return charts.funnel_chart(
            "Reactivation funnel, last 12 weeks",
            data["stages"],
            bases=FUNNEL_BASES,
            highlight=("Booked", "Showed"),
            chart_id="funnel",
        )

    return _block("From eligible to showed", section, make)


def _rate_block(title: str, section: queries.Section, y_label: str, chart_id: str) -> Block:
    def make(data: dict) -> charts.Chart:
        return charts.line_chart(
            title,
            data["x"],
            data["series"],
            x_label="Week starting",
            y_label=y_label,
            value_format=charts.fmt_percent,
            y_max=1.0,
            chart_id=chart_id,
        )

    return _block(title, section, make)


def _lift_block(section: queries.Section) -> Block:
    def make(rows: list[dict]) -> charts.Chart:
        lift_rows = [
            charts.LiftRow(
                label="All rules" if r["rule_id"] == "all_rules" else str(r["rule_id"]),
                lift=r.get("lift"),
                ci_low=r.get("ci_low"),
                ci_high=r.get("ci_high"),
                detail=(
                    f"contacted {charts.fmt_count(r['contacted_n'])}, holdout {charts.fmt_count(r['holdout_n'])}"
                    if "contacted_n" in r and "holdout_n" in r
                    else ""
                ),
            )
            for r in rows
        ]
        return charts.lift_chart(
            "Booked-rate lift against the holdout, by rule",
            lift_rows,
            value_label="Lift in booked rate (percentage points)",
            chart_id="lift",
        )

    return _block("Lift against the holdout", section, make)


def _locations_table(section: queries.Section) -> dict:
    if not section.available:
        return {"data": False, "note": section.note, "source": section.source}
    headers = [LOCATION_HEADERS.get(c, c.replace("_", " ").capitalize()) for c in section.columns]
    rows = []
    for row in section.data["rows"]:
        cells = [str(row[0])]
        for column, value in zip(section.columns[1:], row[1:], strict=True):
            is_rate = "rank" not in column and any(word in column for word in ("rate", "share", "pct", "lift"))
            if isinstance(value, float) and is_rate and "vs" in column:
                cells.append(charts.fmt_points(value))
            elif isinstance(value, float) and is_rate and -1.5 <= value <= 1.5:
                cells.append(charts.fmt_percent(value))
            else:
                cells.append(charts.fmt_count(value))
        rows.append(cells)
    return {
        "data": True,
        "headers": headers,
        "rows": rows,
        "source": section.source,
        "caption": section.data["caption"],
    }


def _note_build_date(conn, cat: queries.Catalog, section: queries.Section, as_of: date) -> None:
    """Say so in the source line when a mart was built for another night than the report's."""
    schema, _, table = section.source.partition(".")
    if schema != "marts" or not section.available:
        return
    built = queries.built_for(conn, cat, table)
    if built is not None and built != as_of:
        section.source = f"{section.source}, built for the night of {built.isoformat()}"


def build_context(url: str, as_of: date, notice: str | None = None) -> dict:
    """Everything the template shows, read in one read-only session."""
    with open_report_connection(url) as conn:
        cat = queries.Catalog(conn)
        numbers = night_numbers(conn, cat, as_of)
        funnel = queries.funnel(conn, cat, as_of)
        booked_by_location = queries.rates_over_time(conn, cat, as_of, dimension="location_id", numerator="booked")
        booked_by_channel = queries.rates_over_time(conn, cat, as_of, dimension="channel", numerator="booked")
        delivered_by_channel = queries.rates_over_time(conn, cat, as_of, dimension="channel", numerator="delivered")
        lift = queries.holdout_lift(conn, cat, as_of)
        suppressions = queries.suppression_reasons(conn, cat, as_of)
        quality = queries.quality_trend(conn, cat, as_of)
        bookings = queries.bookings_weekly(conn, cat, as_of)
        opt_outs = queries.opt_outs_and_complaints(conn, cat, as_of)
        locations = queries.location_comparison(conn, cat, as_of)
        sections = (funnel, booked_by_location, booked_by_channel, delivered_by_channel, lift, suppressions)
        for section in (*sections, quality, bookings, opt_outs, locations):
            _note_build_date(conn, cat, section, as_of)

    # Tonight's suppressions mart, or (for a reader who may see only the reporting marts) the funnel's week.
    tonight = suppressions.source == "marts.outreach_suppressions"
    suppression_title = f"Top suppression reasons {'tonight' if tonight else 'this week'}"
    groups = [
        Group(
            "funnel-section",
            "Funnel",
            "The 12 weeks up to this night. Eligible and not suppressed count each person once per care-gap rule "
            "and week; the contact steps count outreach episodes by the week of their first touch, with what has "
            "come of them so far.",
            [_funnel_block(funnel)],
        ),
        Group(
            "rates",
            "Rates by location and channel",
            "Weekly booked rate (bookings ÷ people contacted) and delivery rate, per location and per channel.",
            [
                _rate_block("Booked rate by location", booked_by_location, "Booked ÷ contacted", "booked-by-location"),
                _rate_block("Booked rate by channel", booked_by_channel, "Booked ÷ contacted", "booked-by-channel"),
                _rate_block(
                    "Delivery rate by channel", delivered_by_channel, "Delivered ÷ contacted", "delivered-by-channel"
                ),
                _block(
                    "Bookings per week by location",
                    bookings,
                    lambda d: charts.line_chart(
                        "Bookings per week by location",
                        d["x"],
                        d["series"],
                        x_label="Week starting",
                        y_label="Bookings",
                        chart_id="bookings-weekly",
                    ),
                ),
            ],
        ),
        Group(
            "effect",
            "Does outreach work?",
            "Each care-gap rule keeps a randomised holdout that is never contacted; the difference in booked rates is "
            "the effect of outreach itself.",
            [_lift_block(lift)],
        ),
        Group(
            "not-contacted",
            "Why people were not contacted",
            "Every person with an open care gap who was not contacted tonight has a recorded reason; a person can "
            "have more than one.",
            [
                _block(
                    suppression_title,
                    suppressions,
                    lambda items: charts.bar_chart(
                        suppression_title,
                        items,
                        value_label="People",
                        category_label="Reason",
                        chart_id="suppressions",
                    ),
                ),
                _block(
                    "Opt-outs and complaints per week",
                    opt_outs,
                    lambda d: charts.column_chart(
                        "Opt-outs and complaints per week",
                        d["x"],
                        d["series"],
                        x_label="Week starting",
                        y_label="People",
                        chart_id="opt-outs",
                    ),
                ),
            ],
        ),
        Group(
            "quality",
            "Data quality",
            "Expectations that failed each night. A critical failure blocks sends in its scope.",
            [
                _block(
                    "Failed data-quality expectations per night",
                    quality,
                    lambda d: charts.line_chart(
                        "Failed data-quality expectations per night",
                        d["x"],
                        d["series"],
                        x_label="Night",
                        y_label="Failed expectations",
                        chart_id="quality-trend",
                    ),
                )
            ],
        ),
    ]
    headline_items = [
        {
            "key": key,
            "label": label,
            "value": format_value(key, numbers.get(key)),
            "alert": key == "blocked_batches" and bool(numbers.get(key)),
        }
        for key, label in HEADLINE_LABELS.items()
    ]
    batches = numbers.get("batches") or {}
    by_status = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(batches.items()))
    context_line = (
        f"Candidates after suppression: {format_value('candidates', numbers.get('candidates'))}; "
        f"touches planned: {format_value('planned', numbers.get('planned'))}; "
        f"held out: {format_value('held_out', numbers.get('held_out'))}; "
        f"batches: {sum(batches.values())}" + (f" ({by_status})" if by_status else "") + "."
    )
    return {
        "as_of": as_of.isoformat(),
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "headline": numbers,
        "headline_items": headline_items,
        "context_line": context_line,
        "groups": groups,
        "locations": _locations_table(locations),
        "definitions": DEFINITIONS,
        "notice": notice,
    }


def render_html(context: dict) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**context)


def default_report_path(as_of: date) -> Path:
    return get_settings().reports_dir / f"reactivation-report-{as_of.isoformat()}.html"


def write_report(url: str, as_of: date, out: Path | None = None, *, notice: str | None = None) -> tuple[Path, dict]:
    """Render the night's report to ``out`` (default: the state folder's reports/); returns (path, headline).

    ``notice``: a caveat shown at the top (e.g. the reporting marts could not be refreshed tonight).
    """
    context = build_context(url, as_of, notice)
    html = render_html(context)
    path = (out or default_report_path(as_of)).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a reader never sees half a report.
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(html)
        tmp = Path(handle.name)
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    return path, context["headline"]

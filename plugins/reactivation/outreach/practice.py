"""What a message may say about the practice, and the reason texts, as the warehouse holds them."""

from __future__ import annotations

import psycopg


def practice_details(conn: psycopg.Connection) -> dict[str, dict[str, str | None]]:
    """Per location: the allow-listed practice fields a message may carry."""
    rows = conn.execute(
        "select distinct on (location_id) location_id, name, phone_e164, booking_url "
        "from staging.stg_emr__locations order by location_id, extract_date desc"
    ).fetchall()
    return {r[0]: {"practice_name": r[1], "practice_phone": r[2], "booking_url": r[3]} for r in rows}


def message_reasons(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    """(rule_id, language) → the plain reason text (seed ``message_reasons``)."""
    rows = conn.execute("select rule_id, language, reason from reference.message_reasons")
    return {(rule, language): text for rule, language, text in rows}

"""The template check: every message is one calm SMS segment or a plain email, with practice and stop."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from reactivation.outreach import templates
from reactivation.outreach.templates import TemplateError, check_templates, gsm7_length, render

ROOT = Path(__file__).resolve().parents[1]
REASONS_SEED = ROOT / "dbt_project" / "seeds" / "outreach" / "message_reasons.csv"


def _reasons() -> dict[tuple[str, str], str]:
    with REASONS_SEED.open(newline="") as handle:
        return {(row["rule_id"], row["language"]): row["reason"] for row in csv.DictReader(handle)}


@pytest.fixture
def template_dir(tmp_path, monkeypatch):
    """A copy of the real templates that a test may break."""
    for path in templates.TEMPLATE_DIR.rglob("*.j2"):
        target = tmp_path / path.relative_to(templates.TEMPLATE_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    monkeypatch.setattr(templates, "TEMPLATE_DIR", tmp_path)
    templates._environment.cache_clear()
    yield tmp_path
    templates._environment.cache_clear()


def test_shipped_templates_pass_the_check() -> None:
    reasons = _reasons()
    assert {lang for _, lang in reasons} == {"en", "es"}
    assert len({rule for rule, _ in reasons}) == 14, "every catalog rule has a reason in both languages"
    assert check_templates(reasons) == []


def test_long_sms_fails(template_dir: Path) -> None:
    (template_dir / "sms" / "en.j2").write_text(
        "{{ practice_name }}: {{ reason }}. Please book soon at {{ booking_url }} or call {{ practice_phone }}. "
        "Reply STOP to opt out."
    )
    assert any("over one 160-character segment" in p for p in check_templates(_reasons()))


def test_non_gsm_characters_fail(template_dir: Path) -> None:
    (template_dir / "sms" / "es.j2").write_text("{{ practice_name }}: {{ reason }}. Responda STOP. Gracias ☺")
    assert any("outside GSM-7" in p for p in check_templates(_reasons()))
    assert gsm7_length("próxima cita") is None  # á/í/ó/ú are not GSM-7
    assert gsm7_length("cita médica") == 11  # é is
    assert gsm7_length("Le extrañamos") == 13


def test_missing_practice_name_or_stop_fails(template_dir: Path) -> None:
    (template_dir / "sms" / "en.j2").write_text("Hello: {{ reason }}. Book: {{ booking_url }}.")
    problems = check_templates(_reasons())
    assert any("practice name is missing" in p for p in problems)
    assert any("stop instruction is missing" in p for p in problems)


def test_fields_outside_the_allow_list_fail(template_dir: Path) -> None:
    (template_dir / "sms" / "en.j2").write_text("{{ practice_name }}: hi {{ first_name }}, {{ reason }}. Reply STOP.")
    assert any("outside the allow-list: ['first_name']" in p for p in check_templates(_reasons()))
    with pytest.raises(TemplateError):
        render("sms", "en", {"practice_name": "X", "first_name": "Ann", "reason": "r"})


def test_language_fallback() -> None:
    fields = {"practice_name": "Clinic", "practice_phone": "+15555555555", "booking_url": None, "reason": "Due"}
    assert render("sms", "es-MX", fields).language == "es"
    assert render("sms", "vi", fields).language == "en"
    assert render("sms", None, fields).language == "en"

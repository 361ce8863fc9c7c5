"""Message templates per channel and language, rendered with Jinja from allow-listed fields only.

A message says who is writing, why (the rule's plain reason, never a diagnosis),
what to do (book online, call, or reply) and how to stop. ``check_templates``
is run by the test suite: an SMS over one segment (160 GSM-7 characters) or
with a character outside GSM-7, a missing practice name or stop instruction,
or any field outside ``ALLOWED_FIELDS`` fails it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import meta

TEMPLATE_DIR = Path(__file__).with_name("templates")
CHANNELS = ("sms", "email")
LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"

# The only values a message may carry. Names, dates of birth, conditions and
# appointment details stay out: a shared phone or inbox must not reveal them.
ALLOWED_FIELDS = frozenset({"practice_name", "practice_phone", "booking_url", "reason"})
# Longest values the product allows for each field (the check renders with these).
FIELD_LIMITS = {"practice_name": 30, "practice_phone": 15, "booking_url": 24, "reason": 60}
STOP_WORDS = {"en": "STOP", "es": "STOP"}

SMS_SEGMENT_CHARS = 160
# GSM 03.38 basic character set; the extension table's characters count double.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


class TemplateError(ValueError):
    """A template or a rendered message breaks a messaging rule."""


@dataclass(frozen=True)
class RenderedMessage:
    channel: str
    language: str
    subject: str | None
    body: str


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
    )


def resolve_language(language: str | None) -> str:
    """The template language for a preference: exact, then its primary subtag, then English."""
    if not language:
        return DEFAULT_LANGUAGE
    primary = language.strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


def template_fields(channel: str, language: str) -> set[str]:
    env = _environment()
    name = f"{channel}/{language}.j2"
    source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
    return set(meta.find_undeclared_variables(env.parse(source)))


def render(channel: str, language: str | None, fields: dict[str, str | None]) -> RenderedMessage:
    """Render one message. Only allow-listed fields reach the template."""
    if channel not in CHANNELS:
        raise TemplateError(f"no templates for channel {channel!r}")
    unknown = set(fields) - ALLOWED_FIELDS
    if unknown:
        raise TemplateError(f"fields not allowed in messages: {sorted(unknown)}")
    lang = resolve_language(language)
    template = _environment().get_template(f"{channel}/{lang}.j2")
    values = {name: fields.get(name) or "" for name in ALLOWED_FIELDS}
    if channel == "email":
        context = template.new_context(values)
        subject = "".join(template.blocks["subject"](context)).strip()
        body = "".join(template.blocks["body"](context)).strip()
        return RenderedMessage(channel, lang, subject, body)
    return RenderedMessage(channel, lang, None, template.render(**values).strip())


def gsm7_length(text: str) -> int | None:
    """Length in GSM-7 septets, or None if the text has a character outside GSM-7."""
    length = 0
    for ch in text:
        if ch in GSM7_BASIC:
            length += 1
        elif ch in GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


def check_message(message: RenderedMessage, practice_name: str) -> list[str]:
    """Problems with one rendered message (empty when it is fine)."""
    problems = []
    if practice_name not in message.body:
        problems.append("the practice name is missing")
    if STOP_WORDS[message.language] not in message.body and "unsubscribe" not in message.body.lower():
        problems.append("the stop instruction is missing")
    if message.channel == "sms":
        length = gsm7_length(message.body)
        if length is None:
            bad = sorted({ch for ch in message.body if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION})
            problems.append(f"characters outside GSM-7: {bad}")
        elif length > SMS_SEGMENT_CHARS:
            problems.append(f"{length} GSM-7 characters, over one {SMS_SEGMENT_CHARS}-character segment")
    return problems


def check_templates(reasons: dict[tuple[str, str], str]) -> list[str]:
    """Check every template with every reason, at the longest field values allowed.

    ``reasons`` maps (rule_id, language) to the reason text (the message_reasons seed).
    """
    problems: list[str] = []
    for channel in CHANNELS:
        for language in LANGUAGES:
            extra = template_fields(channel, language) - ALLOWED_FIELDS
            if extra:
                problems.append(f"{channel}/{language}: uses fields outside the allow-list: {sorted(extra)}")
                continue
            practice = "P" * FIELD_LIMITS["practice_name"]
            for (rule_id, reason_language), reason in sorted(reasons.items()):
                if reason_language != language:
                    continue
                if len(reason) > FIELD_LIMITS["reason"]:
                    problems.append(f"reason {rule_id}/{language} is longer than {FIELD_LIMITS['reason']} characters")
                message = render(
                    channel,
                    language,
                    {
                        "practice_name": practice,
                        "practice_phone": "+1 555 555 5555",
                        "booking_url": "b" * FIELD_LIMITS["booking_url"],
                        "reason": reason,
                    },
                )
                for problem in check_message(message, practice):
                    problems.append(f"{channel}/{language} with {rule_id}: {problem}")
    return problems

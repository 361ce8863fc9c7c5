"""Classify an SMS reply as STOP, START, HELP or anything else (pure: no I/O, no logging).

The rule, in order:

1. **Normalise**: Unicode NFKD with accents removed ("más" → "mas"), case-folded, every run of
   characters that is not a letter or digit becomes one space ("opt-out" → "opt out", " STOP!!" →
   "stop"), trimmed.
2. **Whole message**: if the normalised message *is* a keyword variant, that keyword wins:
   STOP ("stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke", "opt out",
   "optout", "no mas", ...), START ("start", "unstop", "resubscribe", ...), HELP ("help", "info",
   "ayuda").
3. **Stop inside a sentence**: if the message *contains* an unambiguous stop phrase as whole words
   ("please stop texting me", "Unsubscribe please", "no más mensajes", "don't text me"), it is a
   STOP too. An opt-out is a legal and ethical obligation; a wrong opt-out costs one "START" reply,
   a missed one sends messages to someone who asked us to stop. So we err on the side of stopping,
   knowing that "can I stop by on Tuesday?" opts out (staff never see it; the patient can reply START).
4. Everything else is "other" and goes to the staff queue, which is where a reply such as "yes",
   "I need help booking" or "I want to cancel my appointment" belongs.

Ambiguous words count only as the whole message: "cancel", "end" and "quit" are everyday words in
a practice's inbox ("can I cancel my 3pm?"), so inside a sentence they are left for staff. START
and HELP also count only as the whole message: "yes" (Twilio's own opt-in word) and "help me book"
are answers staff should read, and "start" inside a sentence ("when does my appointment start")
must never undo an opt-out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Keyword = Literal["stop", "start", "help", "other"]
Match = Literal["exact", "contains"]

# Whole-message variants (after normalisation). Twilio's standard opt-out words plus common forms.
STOP_EXACT = frozenset(
    {
        "stop",
        "stopall",
        "stop all",
        "stop please",
        "please stop",
        "unsubscribe",
        "unsub",
        "cancel",
        "cancel all",
        "end",
        "quit",
        "revoke",
        "opt out",
        "optout",
        "opt me out",
        "remove",
        "remove me",
        "no mas",
        "nomas",
        "alto",
        "baja",
        "darse de baja",
    }
)
START_EXACT = frozenset({"start", "unstop", "resubscribe", "re subscribe", "subscribe", "opt in", "optin"})
HELP_EXACT = frozenset({"help", "info", "ayuda"})

# Phrases that mean "stop" wherever they appear as whole words in a longer message.
STOP_CONTAINED = (
    "stop",
    "stopall",
    "unsubscribe",
    "unsub",
    "opt out",
    "optout",
    "opt me out",
    "revoke",
    "no mas",
    "remove me",
    "take me off",
    "do not text",
    "dont text",
    "don t text",
    "do not contact",
    "dont contact",
    "don t contact",
    "do not message",
    "dont message",
    "don t message",
)
_CONTAINED = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in STOP_CONTAINED) + r")\b")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class Classification:
    """What a reply asks for, and whether the whole message was the keyword or only contained it."""

    keyword: Keyword
    match: Match | None = None


def normalise(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: accents, case and punctuation removed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_WORD.sub(" ", stripped.casefold()).strip()


def classify(text: str | None) -> Classification:
    """Classify one inbound SMS body (see the module docstring for the rule)."""
    words = normalise(text or "")
    if not words:
        return Classification("other")
    if words in STOP_EXACT:
        return Classification("stop", "exact")
    if words in START_EXACT:
        return Classification("start", "exact")
    if words in HELP_EXACT:
        return Classification("help", "exact")
    if _CONTAINED.search(words):
        return Classification("stop", "contains")
    return Classification("other")

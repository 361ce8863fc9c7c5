"""Outreach configuration (config/outreach.yml): cadences, contact rules, approval policies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

import yaml

from reactivation.settings import PROJECT_ROOT

DEFAULT_PATH = PROJECT_ROOT / "config" / "outreach.yml"
CHANNELS = ("sms", "email", "call")
END_REASONS = ("booked", "declined", "opted_out", "gap_closed", "cadence_finished")


class OutreachConfigError(ValueError):
    """The outreach configuration is malformed; the message names the key."""


@dataclass(frozen=True)
class Touch:
    day: int
    channel: str
    closing: bool = False


@dataclass(frozen=True)
class Cadence:
    cadence_id: str
    touches: tuple[Touch, ...]
    max_attempts: int


@dataclass(frozen=True)
class ApprovalPolicy:
    name: str
    rules: frozenset[str] | None  # None: any rule
    locations: frozenset[str] | None
    channels: frozenset[str]
    max_batch_size: int

    def covers(self, *, location_id: str, channel: str, rules: set[str], size: int) -> bool:
        return (
            (self.rules is None or rules <= self.rules)
            and (self.locations is None or location_id in self.locations)
            and channel in self.channels
            and size <= self.max_batch_size
        )


@dataclass(frozen=True)
class OutreachConfig:
    cadences: dict[str, Cadence]
    cadence_by_rule: dict[str, str]
    cadence_by_segment: dict[str, str]
    default_cadence: str
    end_episode_on: frozenset[str]
    quiet_start: time
    quiet_end: time
    person_day_cap: int
    person_week_cap: int
    household_day_cap: int
    household_week_cap: int
    channel_fallback: tuple[str, ...]
    approval_policies: tuple[ApprovalPolicy, ...] = field(default=())
    holdout_share: float = 0.0

    def cadence_for(self, rule_id: str, segment: str | None) -> Cadence:
        cadence_id = self.cadence_by_rule.get(rule_id) or self.cadence_by_segment.get(segment or "")
        return self.cadences[cadence_id or self.default_cadence]


def _any_or_set(value, where: str) -> frozenset[str] | None:
    if value in (None, "any"):
        return None
    if not isinstance(value, list):
        raise OutreachConfigError(f"{where}: expected a list or 'any'")
    return frozenset(str(v) for v in value)


def _share(value, where: str) -> float:
    share = float(value)
    if not 0.0 <= share < 1.0:
        raise OutreachConfigError(f"{where}: must be at least 0 and below 1 (got {value})")
    return share


def _clock(value: str, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise OutreachConfigError(f"{where}: {value!r} is not a time like 08:00") from None


def parse_config(data: dict, where: str = "outreach.yml") -> OutreachConfig:
    try:
        cadences = {}
        for cadence_id, spec in data["cadences"].items():
            touches = tuple(
                Touch(day=int(t["day"]), channel=str(t["channel"]), closing=bool(t.get("closing", False)))
                for t in spec["touches"]
            )
            if not touches:
                raise OutreachConfigError(f"{where}: cadence {cadence_id} has no touches")
            if [t.day for t in touches] != sorted(t.day for t in touches):
                raise OutreachConfigError(f"{where}: cadence {cadence_id}: touch days must increase")
            for touch in touches:
                if touch.channel not in CHANNELS:
                    raise OutreachConfigError(f"{where}: cadence {cadence_id}: unknown channel {touch.channel!r}")
            cadences[cadence_id] = Cadence(cadence_id, touches, int(spec.get("max_attempts", len(touches))))
        by_rule = {str(k): str(v) for k, v in (data.get("cadence_by_rule") or {}).items()}
        by_segment = {str(k): str(v) for k, v in (data.get("cadence_by_segment") or {}).items()}
        default = str(data.get("default_cadence") or next(iter(cadences)))
        for name in [*by_rule.values(), *by_segment.values(), default]:
            if name not in cadences:
                raise OutreachConfigError(f"{where}: unknown cadence {name!r}")
        end_on = frozenset(data.get("end_episode_on") or END_REASONS)
        unknown_end = end_on - set(END_REASONS)
        if unknown_end:
            raise OutreachConfigError(f"{where}: end_episode_on has unknown reasons {sorted(unknown_end)}")
        rules = data.get("contact_rules") or {}
        quiet = rules.get("quiet_hours") or {}
        caps = rules.get("caps") or {}
        person, household = caps.get("per_person") or {}, caps.get("per_household") or {}
        fallback = tuple(rules.get("channel_fallback") or CHANNELS)
        policies = tuple(
            ApprovalPolicy(
                name=str(p["name"]),
                rules=_any_or_set(p.get("rules"), f"{where}: approval_policies.{p['name']}.rules"),
                locations=_any_or_set(p.get("locations"), f"{where}: approval_policies.{p['name']}.locations"),
                channels=frozenset(p.get("channels") or CHANNELS),
                max_batch_size=int(p.get("max_batch_size", 0)),
            )
            for p in data.get("approval_policies") or []
        )
        return OutreachConfig(
            cadences=cadences,
            cadence_by_rule=by_rule,
            cadence_by_segment=by_segment,
            default_cadence=default,
            end_episode_on=end_on,
            quiet_start=_clock(quiet.get("start", "08:00"), f"{where}: quiet_hours.start"),
            quiet_end=_clock(quiet.get("end", "21:00"), f"{where}: quiet_hours.end"),
            person_day_cap=int(person.get("day", 1)),
            person_week_cap=int(person.get("week", 3)),
            household_day_cap=int(household.get("day", 1)),
            household_week_cap=int(household.get("week", 3)),
            channel_fallback=fallback,
            approval_policies=policies,
            holdout_share=_share((data.get("holdout") or {}).get("share", 0.0), f"{where}: holdout.share"),
        )
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, OutreachConfigError):
            raise
        raise OutreachConfigError(f"{where}: malformed ({type(err).__name__}: {err})") from None


def load_config(path: Path | None = None) -> OutreachConfig:
    path = path or DEFAULT_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutreachConfigError(f"outreach configuration not found: {path}") from None
    return parse_config(data or {}, str(path))

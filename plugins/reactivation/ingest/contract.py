"""The extract contract: the entities and columns every EMR source is mapped onto.

This module is the single source of truth for the raw layer. The raw tables,
the native CSV layout, the adapters and ``docs/extract-contract.md`` all follow
it. Every entity is keyed by (source_system, location_id, its source key); the
loader adds source_system and location from the load, so extract files need not
carry them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # text | date | timestamp | boolean | numeric | code | timezone
    required: bool = False
    allowed: tuple[str, ...] = ()
    description: str = ""

    @property
    def sql_type(self) -> str:
        return {
            "text": "text",
            "code": "text",
            "timezone": "text",
            "date": "date",
            "timestamp": "timestamptz",
            "boolean": "boolean",
            "numeric": "numeric",
        }[self.type]


@dataclass(frozen=True)
class Entity:
    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # Columns the loader derives from others (never read from a file).
    derived: tuple[Column, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def table_columns(self) -> tuple[Column, ...]:
        return self.columns + self.derived


APPOINTMENT_STATUSES = ("booked", "completed", "cancelled", "no_show")
CHANNELS = ("sms", "email", "call", "any")
PREFERENCE_STATUSES = ("opt_in", "opt_out")
REFERRAL_STATUSES = ("ordered", "scheduled", "completed", "cancelled")
PLAN_STATUSES = ("presented", "accepted", "completed", "declined")
SEXES = ("F", "M", "O", "U")
CODE_SYSTEMS = ("ICD10CM", "SNOMED", "CPT", "CDT", "HCPCS", "LOINC", "RXNORM", "LOCAL")
HOLD_TYPES = ("do_not_contact", "clinical_hold", "legal_hold", "other")

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "locations",
            "A practice location (clinic, office) that sends extracts.",
            ("location_id",),
            (
                Column("location_id", "text", True, description="Source id of the location."),
                Column("name", "text", True, description="Name patients know the practice by."),
                Column("timezone", "timezone", True, description="IANA time zone, e.g. America/Chicago."),
                Column("phone", "text", description="Practice phone patients can call."),
                Column("address_line", "text"),
                Column("city", "text"),
                Column("state", "text"),
                Column("postal_code", "text"),
                Column("booking_url", "text", description="Online booking link, if any."),
            ),
            derived=(Column("phone_e164", "text"),),
        ),
        Entity(
            "providers",
            "A clinician or hygienist who sees patients.",
            ("provider_id",),
            (
                Column("provider_id", "text", True),
                Column("name", "text"),
                Column("specialty", "text"),
                Column("location_id", "text", description="Home location of the provider."),
            ),
        ),
        Entity(
            "patients",
            "A patient record as the source system holds it (duplicates across locations are resolved later).",
            ("patient_id",),
            (
                Column("patient_id", "text", True),
                Column("first_name", "text", True),
                Column("last_name", "text", True),
                Column("birth_date", "date", True),
                Column("sex", "code", allowed=SEXES),
                Column("language", "text", description="BCP-47 / ISO 639-1 code, e.g. en, es."),
                Column("phone", "text", description="Mobile or home phone as entered."),
                Column("email", "text"),
                Column("address_line", "text"),
                Column("city", "text"),
                Column("state", "text"),
                Column("postal_code", "text"),
                Column("deceased", "boolean"),
                Column("deceased_date", "date"),
                Column("household_key", "text", description="Family / account key when the source has one."),
                Column("guarantor_id", "text", description="Patient id of the responsible party."),
                Column("home_location_id", "text", description="Location the patient belongs to, if not the load's."),
            ),
            derived=(
                Column("phone_e164", "text"),
                Column("phone_is_valid", "boolean"),
                Column("email_normalised", "text"),
                Column("email_is_valid", "boolean"),
            ),
        ),
        Entity(
            "contact_preferences",
            "A consent or opt-out for one channel.",
            ("patient_id", "channel", "effective_date"),
            (
                Column("patient_id", "text", True),
                Column("channel", "code", True, CHANNELS),
                Column("status", "code", True, PREFERENCE_STATUSES),
                Column("effective_date", "date"),
                Column("source", "text", description="Where the preference came from (front desk, portal, reply)."),
            ),
        ),
        Entity(
            "appointments",
            "A scheduled appointment and what became of it.",
            ("appointment_id",),
            (
                Column("appointment_id", "text", True),
                Column("patient_id", "text", True),
                Column("status", "code", True, APPOINTMENT_STATUSES),
                Column("scheduled_at", "timestamp", True),
                Column("appointment_type", "text"),
                Column("provider_id", "text"),
                Column("location_id", "text"),
                Column("created_at", "timestamp"),
                Column("cancelled_at", "timestamp"),
            ),
        ),
        Entity(
            "encounters",
            "A completed visit.",
            ("encounter_id",),
            (
                Column("encounter_id", "text", True),
                Column("patient_id", "text", True),
                Column("encounter_date", "timestamp", True),
                Column("visit_type_code", "text"),
                Column("visit_type_system", "code", allowed=CODE_SYSTEMS),
                Column("encounter_class", "text", description="wellness, ambulatory, outpatient, dental, ..."),
                Column("description", "text"),
                Column("provider_id", "text"),
                Column("location_id", "text"),
            ),
        ),
        Entity(
            "conditions",
            "A diagnosis on the patient's problem list.",
            ("patient_id", "code", "onset_date"),
            (
                Column("patient_id", "text", True),
                Column("code", "text", True),
                Column("code_system", "code", True, CODE_SYSTEMS),
                Column("onset_date", "date"),
                Column("resolved_date", "date"),
                Column("encounter_id", "text"),
                Column("description", "text"),
            ),
        ),
        Entity(
            "procedures",
            "A procedure performed (CPT, CDT, HCPCS or SNOMED).",
            ("patient_id", "code", "performed_at"),
            (
                Column("patient_id", "text", True),
                Column("code", "text", True),
                Column("code_system", "code", True, CODE_SYSTEMS),
                Column("performed_at", "timestamp", True),
                Column("encounter_id", "text"),
                Column("description", "text"),
            ),
        ),
        Entity(
            "observations",
            "A measurement or result (LOINC), e.g. HbA1c.",
            ("patient_id", "code", "observed_at"),
            (
                Column("patient_id", "text", True),
                Column("code", "text", True),
                Column("code_system", "code", True, CODE_SYSTEMS),
                Column("observed_at", "timestamp", True),
                Column("value_numeric", "numeric"),
                Column("value_text", "text"),
                Column("unit", "text"),
                Column("encounter_id", "text"),
            ),
        ),
        Entity(
            "referrals",
            "A referral ordered for the patient.",
            ("referral_id",),
            (
                Column("referral_id", "text", True),
                Column("patient_id", "text", True),
                Column("status", "code", True, REFERRAL_STATUSES),
                Column("ordered_date", "date", True),
                Column("specialty", "text"),
                Column("scheduled_date", "date"),
                Column("completed_date", "date"),
            ),
        ),
        Entity(
            "treatment_plans",
            "A treatment plan presented to the patient.",
            ("plan_id",),
            (
                Column("plan_id", "text", True),
                Column("patient_id", "text", True),
                Column("status", "code", True, PLAN_STATUSES),
                Column("presented_date", "date", True),
                Column("code", "text"),
                Column("code_system", "code", allowed=CODE_SYSTEMS),
                Column("description", "text"),
                Column("completed_date", "date"),
            ),
        ),
        Entity(
            "recalls",
            "A recall due date set by the practice system (hygiene recall, follow-up), or a 'not now' date.",
            ("patient_id", "recall_type", "due_date"),
            (
                Column("patient_id", "text", True),
                Column("recall_type", "text", True, description="e.g. hygiene, follow_up, not_now."),
                Column("due_date", "date", True),
                Column("recall_id", "text"),
            ),
        ),
        Entity(
            "holds",
            "A clinical hold or do-not-contact flag.",
            ("patient_id", "hold_type", "start_date"),
            (
                Column("patient_id", "text", True),
                Column("hold_type", "code", True, HOLD_TYPES),
                Column("start_date", "date"),
                Column("end_date", "date"),
                Column("reason", "text", description="Free text; never sent to patients or logged."),
            ),
        ),
    )
}

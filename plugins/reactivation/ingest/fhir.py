"""FHIR R4 Bulk Data (NDJSON) adapter: one resource per line, mapped onto the extract contract.

A bulk export is a folder of ``<ResourceType>.ndjson`` files (also ``Patient.000.ndjson``,
``1.Patient.ndjson``, ``Patient_2.ndjson``). :func:`fhir_mapping` routes each file to a contract
entity; :func:`rows_source_for` streams it line by line (constant memory, bytes read reported to
the progress callback), parses each line and emits one row per resource whose header is the
contract columns in contract order plus a few ``fhir_*`` columns, which the loader keeps in
``extra``. The file mapping's rules are therefore identity rules, and all type checks, code checks
and quarantining stay in the loader, exactly as for CSV sources.

Accounting: every non-blank line is either loaded or quarantined, never dropped. A line that is
not valid UTF-8 or JSON, is not an object, holds a resource of another type, or is a resource this
module deliberately does not load (below) becomes a one-field row ``<not loaded: reason>``; the
loader quarantines it as a ragged row, and the reason (PHI-free: types and statuses only) is the
quarantined record. Missing required values are left empty and the loader quarantines the row
naming the column. Unmapped statuses pass through so the loader quarantines them as not allowed.

Files (case-insensitive): ``*<type>.ndjson`` and ``*<type>[!a-z]*.ndjson``, so PractitionerRole,
AppointmentResponse, ObservationDefinition or OrganizationAffiliation never match their prefix.

- Patient → patients. patient_id = id, else the first identifier value. Name: use official, then
  usual, then the first not ``old``: first_name = given[0], last_name = family. birth_date =
  birthDate (partial dates such as ``1970`` are quarantined, not guessed). sex: female F, male M,
  other O, unknown U, anything else empty. language = communication[preferred, else first]
  .language.coding[0].code, else its text (kept as given, e.g. ``es`` or ``en-US``). phone =
  telecom system phone or sms (sms counts as mobile), ``old`` ones skipped, best by use (mobile,
  then home, then any other) then by rank (1 first, unranked last), then file order. email =
  telecom system email, home first, then by rank. Address: use home, else the first not ``old``;
  address_line = its lines joined with ``", "``. deceased = true for deceasedBoolean true or any
  deceasedDateTime, false for deceasedBoolean false, empty when absent; deceased_date = the date
  part of deceasedDateTime. household_key = value of an identifier whose type text or coding code
  is ``household``. guarantor_id and home_location_id stay empty. Extra: fhir_mrn (identifier of
  type MR), fhir_status (active/inactive from Patient.active).
- Practitioner → providers. provider_id = id; name = name.text, else given names and family;
  specialty = qualification[0].code text, else coding display or code; location_id empty.
- Organization and Location → locations. location_id = id; name; timezone = extension whose url
  ends with ``timezone`` (valueCode/valueString, if a known IANA zone), else the zone of
  address.state, else ``UTC``; phone = telecom phone (work first, then rank; Organization also
  contact[].telecom); booking_url = telecom system url; address as for patients (use work first).
- Appointment → appointments. patient/provider/location = first participant actor of type
  Patient/Practitioner/Location. status: proposed, pending, booked, arrived, checked-in → booked;
  fulfilled → completed; cancelled → cancelled; noshow → no_show; entered-in-error →
  ``entered_in_error`` (quarantined: not allowed); others pass through. scheduled_at = start;
  appointment_type = appointmentType coding[0] code (else its text), else serviceType[0] coding[0]
  code (else text); created_at = created; cancelled_at = cancellationDate.
- Encounter → encounters, only status finished (or R5 completed): any other status is not a
  completed visit and is quarantined. encounter_date = period.start (R5 actualPeriod.start);
  visit type = type[0]'s coding (see codings below); description = type[0].text, else the coding's
  display; encounter_class = class code (R4 Coding or R5 list), v3 ActCode mapped to the words
  Synthea uses (AMB ambulatory, EMER emergency, IMP/ACUTE/NONAC inpatient, ...), others lowercased;
  provider = first participant individual (R5 actor) Practitioner; location =
  location[0].location, else serviceProvider (an Organization, also a location).
- Condition → conditions. Quarantined when verificationStatus is entered-in-error or refuted.
  code/code_system from code; onset_date = onsetDateTime, else onsetPeriod.start (recordedDate is
  not an onset: left empty); resolved_date = abatementDateTime, else abatementPeriod.start;
  encounter_id = encounter; description = code.text, else the coding's display. fhir_status =
  clinicalStatus code.
- Procedure → procedures. Quarantined when status is not-done, entered-in-error or preparation
  (not performed). performed_at = performedDateTime, else performedPeriod.start (R5
  occurrenceDateTime/occurrencePeriod.start).
- Observation → observations. Quarantined when status is entered-in-error or cancelled.
  observed_at = effectiveDateTime, effectivePeriod.start, effectiveInstant, else issued;
  value_numeric = valueQuantity.value (or valueInteger), unit = valueQuantity.unit, else its code;
  value_text = valueString, valueCodeableConcept text/display, or valueBoolean.
- ServiceRequest → referrals, only when it is a referral: a category or code with SNOMED 3457005
  or text mentioning ``referral``, or a performerType. Lab, imaging and other orders are
  quarantined (``not a referral``), so outreach never reads a lab order as a referral. status:
  draft, active, on-hold → ordered (active with an occurrence date → scheduled); completed →
  completed; revoked, entered-in-error → cancelled; others pass through. ordered_date =
  authoredOn; specialty = performerType text, else coding display or code; scheduled_date =
  occurrenceDateTime, else occurrencePeriod.start; completed_date empty.
- CarePlan → treatment_plans. status: draft → presented, active and on-hold → accepted,
  completed → completed, revoked → declined, others pass through (quarantined). presented_date =
  created, else period.start; code = the first coding with a known code system among categories
  and activity[].detail.code, else the first coding there at all; description = title, else
  description, else the code's display; completed_date = period.end when completed.
- Consent → contact_preferences. patient_id = patient (R5 subject). channel from the words in
  category, provision action/purpose/code (codings and text), provision.data display and
  extension values: sms/mms/txt/texting/text message → sms, email → email, phone/telephone/call/
  voice → call; none → any; several → any for a denial, else the first of sms, email, call.
  status: provision.type deny → opt_out whatever Consent.status (honouring an opt-out is always
  safe), permit → opt_in only while Consent.status is active; entered-in-error and permits not in
  force are quarantined; no provision type → status empty (quarantined). effective_date =
  dateTime, else provision.period.start; source = ``fhir:Consent/<id>``.

Codings: from the concepts named, the first coding with a code whose system is known (SNOMED,
CPT, LOINC, ICD-10-CM, CDT, HCPCS, RxNorm, by URL or OID; http/https, ``www.`` and trailing ``/``
ignored), else the first coding with a code as LOCAL. References: ``Type/id``, absolute URLs,
``_history`` suffixes, ``urn:uuid:``/``urn:oid:`` and conditional ``Type?identifier=system|value``
(the value) all give an id; a reference to another resource type gives nothing. Every row also
carries extra fhir_resource_type, fhir_status (the source status) and fhir_last_updated
(meta.lastUpdated).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reactivation.ingest.contract import ENTITIES
from reactivation.ingest.mapping import ColumnRule, FileMapping, SourceMapping
from reactivation.ingest.normalise import timezone_for_state

SOURCE_SYSTEM = "fhir"

# Resource type → contract entity, in mapping order.
RESOURCE_ENTITIES: dict[str, str] = {
    "Patient": "patients",
    "Practitioner": "providers",
    "Organization": "locations",
    "Location": "locations",
    "Appointment": "appointments",
    "Encounter": "encounters",
    "Condition": "conditions",
    "Procedure": "procedures",
    "Observation": "observations",
    "ServiceRequest": "referrals",
    "CarePlan": "treatment_plans",
    "Consent": "contact_preferences",
}

# Resource files a bulk export commonly holds that the contract has no use for: not reported as unrecognised.
IGNORED_RESOURCES = (
    "AllergyIntolerance",
    "AppointmentResponse",
    "CareTeam",
    "Claim",
    "Coverage",
    "Device",
    "DiagnosticReport",
    "DocumentReference",
    "ExplanationOfBenefit",
    "Goal",
    "ImagingStudy",
    "Immunization",
    "Media",
    "Medication",  # also MedicationRequest, MedicationAdministration, MedicationStatement, ...
    "Provenance",
    "PractitionerRole",
    "RelatedPerson",
    "SupplyDelivery",
)

EXTRA_COLUMNS = ("fhir_resource_type", "fhir_status", "fhir_last_updated")
ENTITY_EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"patients": ("fhir_mrn",)}

_PROGRESS_EVERY = 1 << 20
_TYPE_NAME = re.compile(r"^[A-Za-z]{1,64}$")


class NotLoadable(Exception):
    """A well-formed resource that must not become a contract row; the message is PHI-free."""


# -- mapping and streaming ---------------------------------------------------------------------


def file_patterns(resource_type: str) -> tuple[str, str]:
    """Globs for one resource type's files; a letter may not follow the type, so prefixes never overlap."""
    name = resource_type.lower()
    return f"*{name}.ndjson", f"*{name}[!a-z]*.ndjson"


def fhir_mapping() -> SourceMapping:
    """The FHIR bulk export as a source mapping (identity rules: rows already carry contract columns)."""
    files = []
    for resource_type, entity in RESOURCE_ENTITIES.items():
        rules = {name: ColumnRule(target=name, source=name) for name in ENTITIES[entity].column_names}
        files.extend(FileMapping(pattern=p, entity=entity, rules=rules) for p in file_patterns(resource_type))
    ignore = (*(f"*{r.lower()}*.ndjson" for r in IGNORED_RESOURCES), "*manifest*.json")
    return SourceMapping(name="fhir", source_system=SOURCE_SYSTEM, files=tuple(files), ignore=ignore)


def header_for(entity: str) -> list[str]:
    """Contract columns in contract order, then the ``fhir_*`` columns the loader keeps in ``extra``."""
    return ENTITIES[entity].column_names + list(EXTRA_COLUMNS) + list(ENTITY_EXTRA_COLUMNS.get(entity, ()))


def rows_source_for(
    path: Path, entity: str, progress: Callable[[int], None] | None = None
) -> Callable[[], tuple[list[str], Iterator[tuple[int, list[str]]]]]:
    """A ``rows_source`` for :func:`reactivation.ingest.loader.load_file` reading ``path`` as ``entity``."""
    accepted = frozenset(t for t, e in RESOURCE_ENTITIES.items() if e == entity)
    if not accepted:
        raise ValueError(f"no FHIR resource type maps to entity {entity!r}")
    header = header_for(entity)

    def source() -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
        return header, _rows(path, header, accepted, progress)

    return source


def _rows(
    path: Path, header: list[str], accepted: frozenset[str], progress: Callable[[int], None] | None
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) per non-blank line, reading one line at a time."""
    pending = 0
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            pending += len(raw)
            if progress is not None and pending >= _PROGRESS_EVERY:
                progress(pending)
                pending = 0
            if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if not raw.strip():
                continue
            yield line_no, fields_for_line(raw, header, accepted)
    if progress is not None and pending:
        progress(pending)


def _not_loaded(reason: str) -> list[str]:
    """A one-field row: the loader quarantines it as ragged and keeps the reason as the record."""
    return [f"<not loaded: {reason}>"]


def fields_for_line(raw: bytes, header: list[str], accepted: frozenset[str]) -> list[str]:
    """The row for one NDJSON line: header-ordered values, or a one-field row to be quarantined."""
    try:
        resource = json.loads(raw.decode("utf-8"), parse_float=Decimal)
    except UnicodeDecodeError:
        return _not_loaded("line is not valid UTF-8")
    except (ValueError, RecursionError):
        return _not_loaded("line is not valid JSON")
    if not isinstance(resource, dict):
        return _not_loaded("line is not a JSON object")
    resource_type = resource.get("resourceType")
    if resource_type not in accepted:
        shown = resource_type if isinstance(resource_type, str) and _TYPE_NAME.match(resource_type) else "unknown"
        return _not_loaded(f"expected a {' or '.join(sorted(accepted))} resource, found resourceType {shown}")
    try:
        _, values = map_resource(resource)
    except NotLoadable as err:
        return _not_loaded(str(err))
    except (TypeError, AttributeError, ValueError, KeyError, IndexError) as err:
        return _not_loaded(f"{resource_type} could not be mapped ({type(err).__name__})")
    return [values[column] for column in header]


def map_resource(resource: dict) -> tuple[str, dict[str, str]]:
    """(entity, a value for every header column) for one resource; raises :class:`NotLoadable` for those kept out."""
    resource_type = resource.get("resourceType")
    mapper = _MAPPERS.get(resource_type) if isinstance(resource_type, str) else None
    if mapper is None:
        raise NotLoadable("not a resource type this adapter loads")
    values = mapper(resource)
    values.setdefault("fhir_resource_type", resource_type)
    values.setdefault("fhir_last_updated", _text(_dict(resource.get("meta")).get("lastUpdated")))
    entity = RESOURCE_ENTITIES[resource_type]
    return entity, {column: values.get(column) or "" for column in header_for(entity)}


# -- small readers, tolerant of missing or mistyped elements -------------------------------------


def _list(value: Any) -> list:
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _dicts(value: Any) -> list[dict]:
    return [item for item in _list(value) if isinstance(item, dict)]


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _first(*values: Any) -> str:
    for value in values:
        text = _text(value)
        if text:
            return text
    return ""


def _date(value: Any) -> str:
    """The date part of a FHIR date or dateTime (partial dates pass through for the loader to reject)."""
    return _text(value)[:10]


def _status(resource: dict) -> str:
    return _text(resource.get("status")).lower()


def _by_use(items: Any, preferred: tuple[str, ...]) -> dict:
    """The element with the first preferred ``use``, else the first not marked ``old``."""
    elements = _dicts(items)
    current = [e for e in elements if e.get("use") != "old"] or elements
    for use in preferred:
        for element in current:
            if element.get("use") == use:
                return element
    return current[0] if current else {}


def _rank(point: dict) -> float:
    rank = point.get("rank")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else float("inf")


def _contact_point(telecom: Any, systems: tuple[str, ...], uses: tuple[str, ...]) -> str:
    """Best contact value: by preferred use, then rank, then order; ``sms`` points count as mobile."""
    points = [
        t for t in _dicts(telecom) if t.get("system") in systems and _text(t.get("value")) and t.get("use") != "old"
    ]

    def key(point: dict) -> tuple[int, float]:
        use = "mobile" if point.get("system") == "sms" else point.get("use")
        return (uses.index(use) if use in uses else len(uses), _rank(point))

    return _text(min(points, key=key)["value"]) if points else ""


def _address(address: dict) -> dict[str, str]:
    lines = [_text(line) for line in _list(address.get("line"))]
    return {
        "address_line": ", ".join(line for line in lines if line),
        "city": _text(address.get("city")),
        "state": _text(address.get("state")),
        "postal_code": _text(address.get("postalCode")),
    }


def parse_reference(reference: Any) -> tuple[str, str]:
    """(resource type or "", id) of a FHIR Reference."""
    ref = _dict(reference)
    declared = _text(ref.get("type"))
    value = _text(ref.get("reference"))
    if not value:
        return declared, _text(_dict(ref.get("identifier")).get("value"))
    if value.startswith(("urn:uuid:", "urn:oid:")):
        return declared, value.rsplit(":", 1)[1]
    if "?" in value:
        type_part, _, query = value.partition("?")
        for param in query.split("&"):
            name, _, param_value = param.partition("=")
            if name == "identifier":
                return type_part.rsplit("/", 1)[-1] or declared, param_value.rsplit("|", 1)[-1]
        return type_part.rsplit("/", 1)[-1] or declared, ""
    value = value.split("/_history/", 1)[0].rstrip("/")
    parts = value.split("/")
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return declared, parts[-1]


def _ref(reference: Any, resource_type: str) -> str:
    """The id when the reference is to ``resource_type`` (or of unstated type), else ""."""
    found_type, found_id = parse_reference(reference)
    return found_id if found_type in ("", resource_type) else ""


def _typed_ref(references: Iterable[Any], resource_type: str) -> str:
    """The id of the first reference explicitly to ``resource_type``."""
    for reference in references:
        found_type, found_id = parse_reference(reference)
        if found_type == resource_type and found_id:
            return found_id
    return ""


# -- codes -------------------------------------------------------------------------------------

_CODE_SYSTEMS = {
    "snomed.info/sct": "SNOMED",
    "urn:oid:2.16.840.1.113883.6.96": "SNOMED",
    "ama-assn.org/go/cpt": "CPT",
    "urn:oid:2.16.840.1.113883.6.12": "CPT",
    "loinc.org": "LOINC",
    "urn:oid:2.16.840.1.113883.6.1": "LOINC",
    "hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
    "urn:oid:2.16.840.1.113883.6.90": "ICD10CM",
    "ada.org/cdt": "CDT",
    "urn:oid:2.16.840.1.113883.6.13": "CDT",
    "cms.gov/medicare/coding/hcpcsreleasecodesets": "HCPCS",
    "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
    "nlm.nih.gov/research/umls/rxnorm": "RXNORM",
    "urn:oid:2.16.840.1.113883.6.88": "RXNORM",
}


def code_system(url: Any) -> str:
    """The contract code system for a FHIR coding system URL or OID; LOCAL when unknown."""
    key = _text(url).lower().rstrip("/")
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    return _CODE_SYSTEMS.get(key.removeprefix("www."), "LOCAL")


def _codings(concepts: Iterable[Any]) -> list[dict]:
    return [c for concept in concepts for c in _dicts(_dict(concept).get("coding")) if _text(c.get("code"))]


def pick_coding(*concepts: Any) -> tuple[str, str, str]:
    """(code, contract system, display) of the first coding with a known system, else the first coding."""
    codings = _codings(concepts)
    for coding in codings:
        system = code_system(coding.get("system"))
        if system != "LOCAL":
            return _text(coding["code"]), system, _text(coding.get("display"))
    if codings:
        return _text(codings[0]["code"]), "LOCAL", _text(codings[0].get("display"))
    return "", "", ""


def _concept_code(concept: Any) -> str:
    """coding[0].code of a CodeableConcept, else its text."""
    concept = _dict(concept)
    codings = _dicts(concept.get("coding"))
    return _first(codings[0].get("code") if codings else None, concept.get("text"))


def _concept_label(concept: Any) -> str:
    """Text of a CodeableConcept, else its first coding's display, else its code."""
    concept = _dict(concept)
    codings = _dicts(concept.get("coding"))
    first = codings[0] if codings else {}
    return _first(concept.get("text"), first.get("display"), first.get("code"))


def _concept_codes(concept: Any) -> set[str]:
    return {_text(c.get("code")).lower() for c in _dicts(_dict(concept).get("coding"))}


def _code_columns(concept: Any) -> dict[str, str]:
    code, system, display = pick_coding(concept)
    return {"code": code, "code_system": system, "description": _first(_dict(concept).get("text"), display)}


# -- one mapper per resource type ----------------------------------------------------------------

_SEX = {"female": "F", "male": "M", "other": "O", "unknown": "U"}


def _has_type(identifier: dict, code: str) -> bool:
    kind = _dict(identifier.get("type"))
    return _text(kind.get("text")).lower() == code.lower() or code.lower() in _concept_codes(kind)


def _identifier(resource: dict, type_code: str) -> str:
    for identifier in _dicts(resource.get("identifier")):
        if _has_type(identifier, type_code) and _text(identifier.get("value")):
            return _text(identifier["value"])
    return ""


def map_patient(r: dict) -> dict[str, str]:
    identifiers = _dicts(r.get("identifier"))
    name = _by_use(r.get("name"), ("official", "usual"))
    given = [_text(g) for g in _list(name.get("given")) if _text(g)]
    communications = _dicts(r.get("communication"))
    chosen = next(
        (c for c in communications if c.get("preferred") is True), communications[0] if communications else {}
    )
    deceased_at = _text(r.get("deceasedDateTime"))
    deceased_flag = r.get("deceasedBoolean")
    deceased = "true" if deceased_at or deceased_flag is True else ("false" if deceased_flag is False else "")
    active = r.get("active")
    return {
        "patient_id": _first(r.get("id"), *(i.get("value") for i in identifiers)),
        "first_name": given[0] if given else "",
        "last_name": _text(name.get("family")),
        "birth_date": _text(r.get("birthDate")),
        "sex": _SEX.get(_text(r.get("gender")).lower(), ""),
        "language": _concept_code(chosen.get("language")),
        "phone": _contact_point(r.get("telecom"), ("phone", "sms"), ("mobile", "home")),
        "email": _contact_point(r.get("telecom"), ("email",), ("home",)),
        **_address(_by_use(r.get("address"), ("home",))),
        "deceased": deceased,
        "deceased_date": _date(deceased_at),
        "household_key": _identifier(r, "household"),
        "fhir_mrn": _identifier(r, "MR"),
        "fhir_status": ("active" if active else "inactive") if isinstance(active, bool) else "",
    }


def map_practitioner(r: dict) -> dict[str, str]:
    name = _by_use(r.get("name"), ("official", "usual"))
    parts = [_text(g) for g in _list(name.get("given"))] + [_text(name.get("family"))]
    qualifications = _dicts(r.get("qualification"))
    return {
        "provider_id": _text(r.get("id")),
        "name": _first(name.get("text"), " ".join(p for p in parts if p)),
        "specialty": _concept_label(qualifications[0].get("code")) if qualifications else "",
        "fhir_status": _text(r.get("active")),
    }


def _valid_zone(name: str) -> str:
    if not name:
        return ""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ""
    return name


def _extension_timezone(r: dict) -> str:
    for extension in _dicts(r.get("extension")):
        if _text(extension.get("url")).lower().endswith("timezone"):
            return _valid_zone(_first(extension.get("valueCode"), extension.get("valueString")))
    return ""


def map_location(r: dict) -> dict[str, str]:
    """Organization or Location: both are places patients are seen."""
    telecom = _dicts(r.get("telecom")) + [t for c in _dicts(r.get("contact")) for t in _dicts(c.get("telecom"))]
    address = _address(_by_use(r.get("address"), ("work",)))
    return {
        "location_id": _text(r.get("id")),
        "name": _text(r.get("name")),
        "timezone": _extension_timezone(r) or timezone_for_state(address["state"]) or "UTC",
        "phone": _contact_point(telecom, ("phone",), ("work",)),
        "booking_url": _contact_point(telecom, ("url",), ("work",)),
        **address,
        "fhir_status": _first(r.get("status"), r.get("active")),
    }


_APPOINTMENT_STATUS = {
    "proposed": "booked",
    "pending": "booked",
    "booked": "booked",
    "arrived": "booked",
    "checked-in": "booked",
    "fulfilled": "completed",
    "cancelled": "cancelled",
    "noshow": "no_show",
    "entered-in-error": "entered_in_error",
}


def map_appointment(r: dict) -> dict[str, str]:
    status = _status(r)
    actors = [_dict(p).get("actor") for p in _dicts(r.get("participant"))]
    service_types = _list(r.get("serviceType"))
    return {
        "appointment_id": _text(r.get("id")),
        "patient_id": _typed_ref(actors, "Patient"),
        "status": _APPOINTMENT_STATUS.get(status, status),
        "scheduled_at": _text(r.get("start")),
        "appointment_type": _first(
            _concept_code(r.get("appointmentType")), _concept_code(service_types[0]) if service_types else ""
        ),
        "provider_id": _typed_ref(actors, "Practitioner"),
        "location_id": _typed_ref(actors, "Location"),
        "created_at": _text(r.get("created")),
        "cancelled_at": _text(r.get("cancellationDate")),
        "fhir_status": status,
    }


_ENCOUNTER_CLASSES = {
    "amb": "ambulatory",
    "emer": "emergency",
    "imp": "inpatient",
    "acute": "inpatient",
    "nonac": "inpatient",
    "ss": "short_stay",
    "hh": "home_health",
    "vr": "virtual",
    "obsenc": "observation",
    "prenc": "pre_admission",
    "fld": "field",
}


def _encounter_class(value: Any) -> str:
    # R4: a Coding; R5: a list of CodeableConcept.
    concepts = _list(value) if isinstance(value, list) else []
    code = _concept_code(concepts[0]) if concepts else _text(_dict(value).get("code"))
    return _ENCOUNTER_CLASSES.get(code.lower(), code.lower())


def map_encounter(r: dict) -> dict[str, str]:
    status = _status(r)
    if status not in ("finished", "completed"):
        raise NotLoadable(f"Encounter status {status or 'missing'} is not a completed visit")
    types = _list(r.get("type"))
    code, system, display = pick_coding(types[0]) if types else ("", "", "")
    individuals = [_dict(p).get("individual") or _dict(p).get("actor") for p in _dicts(r.get("participant"))]
    locations = [_dict(loc).get("location") for loc in _dicts(r.get("location"))]
    period = _dict(r.get("period")) or _dict(r.get("actualPeriod"))
    return {
        "encounter_id": _text(r.get("id")),
        "patient_id": _ref(r.get("subject"), "Patient"),
        "encounter_date": _text(period.get("start")),
        "visit_type_code": code,
        "visit_type_system": system,
        "encounter_class": _encounter_class(r.get("class")),
        "description": _first(_dict(types[0]).get("text") if types else "", display),
        "provider_id": _typed_ref(individuals, "Practitioner"),
        "location_id": _typed_ref(locations, "Location") or _ref(r.get("serviceProvider"), "Organization"),
        "fhir_status": status,
    }


def map_condition(r: dict) -> dict[str, str]:
    verification = _concept_codes(r.get("verificationStatus"))
    for excluded in ("entered-in-error", "refuted"):
        if excluded in verification:
            raise NotLoadable(f"Condition verificationStatus is {excluded}")
    return {
        "patient_id": _ref(r.get("subject"), "Patient"),
        **_code_columns(r.get("code")),
        "onset_date": _date(_first(r.get("onsetDateTime"), _dict(r.get("onsetPeriod")).get("start"))),
        "resolved_date": _date(_first(r.get("abatementDateTime"), _dict(r.get("abatementPeriod")).get("start"))),
        "encounter_id": _ref(r.get("encounter"), "Encounter"),
        "fhir_status": _concept_code(r.get("clinicalStatus")),
    }


def map_procedure(r: dict) -> dict[str, str]:
    status = _status(r)
    if status in ("not-done", "entered-in-error", "preparation"):
        raise NotLoadable(f"Procedure status {status} means it was not performed")
    return {
        "patient_id": _ref(r.get("subject"), "Patient"),
        **_code_columns(r.get("code")),
        "performed_at": _first(
            r.get("performedDateTime"),
            _dict(r.get("performedPeriod")).get("start"),
            r.get("occurrenceDateTime"),
            _dict(r.get("occurrencePeriod")).get("start"),
        ),
        "encounter_id": _ref(r.get("encounter"), "Encounter"),
        "fhir_status": status,
    }


def map_observation(r: dict) -> dict[str, str]:
    status = _status(r)
    if status in ("entered-in-error", "cancelled"):
        raise NotLoadable(f"Observation status is {status}")
    code = _code_columns(r.get("code"))
    quantity = _dict(r.get("valueQuantity"))
    return {
        "patient_id": _ref(r.get("subject"), "Patient"),
        "code": code["code"],
        "code_system": code["code_system"],
        "observed_at": _first(
            r.get("effectiveDateTime"),
            _dict(r.get("effectivePeriod")).get("start"),
            r.get("effectiveInstant"),
            r.get("issued"),
        ),
        "value_numeric": _first(quantity.get("value"), r.get("valueInteger")),
        "value_text": _first(
            r.get("valueString"), _concept_label(r.get("valueCodeableConcept")), r.get("valueBoolean")
        ),
        "unit": _first(quantity.get("unit"), quantity.get("code")) if quantity else "",
        "encounter_id": _ref(r.get("encounter"), "Encounter"),
        "fhir_status": status,
    }


_REFERRAL_STATUS = {
    "draft": "ordered",
    "active": "ordered",
    "on-hold": "ordered",
    "completed": "completed",
    "revoked": "cancelled",
    "entered-in-error": "cancelled",
}
_SNOMED_PATIENT_REFERRAL = "3457005"


def _is_referral(r: dict) -> bool:
    concepts = [*_list(r.get("category")), r.get("code")]
    if any(_SNOMED_PATIENT_REFERRAL in _concept_codes(c) for c in concepts):
        return True
    words = " ".join(
        [_text(_dict(c).get("text")) for c in concepts] + [_text(c.get("display")) for c in _codings(concepts)]
    )
    return "referral" in words.lower() or bool(_dict(r.get("performerType")))


def map_service_request(r: dict) -> dict[str, str]:
    if not _is_referral(r):
        raise NotLoadable("ServiceRequest is not a referral (no referral category or code, no performerType)")
    status = _status(r)
    scheduled = _first(r.get("occurrenceDateTime"), _dict(r.get("occurrencePeriod")).get("start"))
    mapped = _REFERRAL_STATUS.get(status, status)
    if status == "active" and scheduled:
        mapped = "scheduled"
    return {
        "referral_id": _text(r.get("id")),
        "patient_id": _ref(r.get("subject"), "Patient"),
        "status": mapped,
        "ordered_date": _date(r.get("authoredOn")),
        "specialty": _concept_label(r.get("performerType")),
        "scheduled_date": _date(scheduled),
        "fhir_status": status,
    }


_PLAN_STATUS = {
    "draft": "presented",
    "active": "accepted",
    "on-hold": "accepted",
    "completed": "completed",
    "revoked": "declined",
}


def map_care_plan(r: dict) -> dict[str, str]:
    status = _status(r)
    period = _dict(r.get("period"))
    activity_codes = [_dict(_dict(a).get("detail")).get("code") for a in _dicts(r.get("activity"))]
    code, system, display = pick_coding(*_list(r.get("category")), *activity_codes)
    return {
        "plan_id": _text(r.get("id")),
        "patient_id": _ref(r.get("subject"), "Patient"),
        "status": _PLAN_STATUS.get(status, status),
        "presented_date": _date(_first(r.get("created"), period.get("start"))),
        "code": code,
        "code_system": system,
        "description": _first(r.get("title"), r.get("description"), display),
        "completed_date": _date(period.get("end")) if status == "completed" else "",
        "fhir_status": status,
    }


_CHANNEL_WORDS = (
    ("sms", re.compile(r"\b(sms|mms|txt|texting|text[ _-]?messag\w*)\b")),
    ("email", re.compile(r"\be[ _-]?mail\b")),
    ("call", re.compile(r"\b(phone|telephone|call|calls|calling|voice)\b")),
)


def _consent_words(r: dict) -> str:
    provision = _dict(r.get("provision"))
    concepts = [*_list(r.get("category")), *_list(provision.get("action")), *_list(provision.get("purpose"))]
    concepts += _list(provision.get("code"))
    words = [_text(_dict(c).get("text")) for c in concepts]
    words += [_text(c.get(k)) for c in _dicts(provision.get("purpose")) for k in ("code", "display")]
    codings = [c for concept in concepts for c in _dicts(_dict(concept).get("coding"))]
    words += [_text(c.get(k)) for c in codings for k in ("code", "display")]
    words += [_text(_dict(d.get("reference")).get("display")) for d in _dicts(provision.get("data"))]
    for extension in _dicts(r.get("extension")) + _dicts(provision.get("extension")):
        words += [_text(extension.get("valueCode")), _text(extension.get("valueString"))]
        words += [_text(_dict(extension.get("valueCoding")).get("code"))]
    return " ".join(w for w in words if w).lower()


def _consent_channel(r: dict, deny: bool) -> str:
    words = _consent_words(r)
    found = [channel for channel, pattern in _CHANNEL_WORDS if pattern.search(words)]
    if not found or (deny and len(found) > 1):
        return "any"
    return found[0]


def map_consent(r: dict) -> dict[str, str]:
    status = _status(r)
    if status == "entered-in-error":
        raise NotLoadable("Consent status is entered-in-error")
    provision = _dict(r.get("provision"))
    kind = _text(provision.get("type")).lower()
    if kind == "permit" and status not in ("active", ""):
        raise NotLoadable(f"Consent permit with status {status} is not in force")
    identifier = _text(r.get("id"))
    return {
        "patient_id": _ref(r.get("patient") or r.get("subject"), "Patient"),
        "channel": _consent_channel(r, deny=kind == "deny"),
        "status": {"deny": "opt_out", "permit": "opt_in"}.get(kind, ""),
        "effective_date": _date(_first(r.get("dateTime"), _dict(provision.get("period")).get("start"))),
        "source": f"fhir:Consent/{identifier}" if identifier else "fhir",
        "fhir_status": status,
    }


_MAPPERS: dict[str, Callable[[dict], dict[str, str]]] = {
    "Patient": map_patient,
    "Practitioner": map_practitioner,
    "Organization": map_location,
    "Location": map_location,
    "Appointment": map_appointment,
    "Encounter": map_encounter,
    "Condition": map_condition,
    "Procedure": map_procedure,
    "Observation": map_observation,
    "ServiceRequest": map_service_request,
    "CarePlan": map_care_plan,
    "Consent": map_consent,
}

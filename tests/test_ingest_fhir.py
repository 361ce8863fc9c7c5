"""The FHIR R4 bulk NDJSON adapter: file routing, per-resource mapping, and loads of a hand-written export.

The fixture export (tests/fixtures/fhir_bulk) is small and fake; every count below is exact, so
any change in what is loaded or quarantined shows up here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from reactivation.ingest.fhir import (
    NotLoadable,
    code_system,
    fhir_mapping,
    header_for,
    map_resource,
    parse_reference,
    rows_source_for,
)
from reactivation.ingest.pipeline import load_path

BULK = Path(__file__).resolve().parent / "fixtures" / "fhir_bulk"

# file → (rows read, loaded, quarantined)
EXPECTED_COUNTS = {
    "Patient.ndjson": (9, 6, 3),  # invalid JSON, a Practitioner in the file, a patient without birthDate
    "Practitioner.ndjson": (2, 2, 0),
    "Organization.ndjson": (1, 1, 0),
    "Location.ndjson": (3, 3, 0),
    "Appointment.ndjson": (5, 4, 1),  # entered-in-error
    "Encounter.ndjson": (4, 3, 1),  # cancelled
    "Condition.ndjson": (3, 2, 1),  # verificationStatus entered-in-error
    "Procedure.ndjson": (3, 2, 1),  # not-done
    "Observation.ndjson": (3, 3, 0),
    "ServiceRequest.ndjson": (4, 3, 1),  # a lab order, not a referral
    "CarePlan.ndjson": (2, 2, 0),
    "Consent.ndjson": (3, 2, 1),  # a permit that is no longer in force
}


def _ref(resource_type: str, resource_id: str) -> dict:
    return {"reference": f"{resource_type}/{resource_id}"}


# -- pure: routing and mapping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "entity"),
    [
        ("Patient.ndjson", "patients"),
        ("Patient.000.ndjson", "patients"),
        ("1.Patient.ndjson", "patients"),
        ("patient_2.NDJSON", "patients"),
        ("Practitioner.ndjson", "providers"),
        ("Practitioner.001.ndjson", "providers"),
        ("Organization.ndjson", "locations"),
        ("Location.ndjson", "locations"),
        ("Appointment.ndjson", "appointments"),
        ("Encounter.ndjson", "encounters"),
        ("Condition.ndjson", "conditions"),
        ("Procedure.ndjson", "procedures"),
        ("Observation.ndjson", "observations"),
        ("ServiceRequest.ndjson", "referrals"),
        ("CarePlan.ndjson", "treatment_plans"),
        ("Consent.ndjson", "contact_preferences"),
        ("PractitionerRole.ndjson", None),
        ("PractitionerRole.000.ndjson", None),
        ("AppointmentResponse.ndjson", None),
        ("OrganizationAffiliation.ndjson", None),
        ("MedicationRequest.ndjson", None),
        ("patients.csv", None),
    ],
)
def test_bulk_file_names_route_to_entities(file_name: str, entity: str | None) -> None:
    mapping = fhir_mapping()
    found = mapping.mapping_for(file_name)
    assert (found.entity if found else None) == entity
    assert mapping.source_system == "fhir"


def test_common_unused_resources_are_ignored_not_unrecognised() -> None:
    mapping = fhir_mapping()
    for name in ("AllergyIntolerance.ndjson", "PractitionerRole.ndjson", "MedicationAdministration.000.ndjson"):
        assert mapping.mapping_for(name) is None
        assert mapping.is_ignored(name)
    assert not mapping.is_ignored("Patient.ndjson")


def test_rules_are_identity_rules_over_the_header() -> None:
    for file_mapping in fhir_mapping().files:
        header = header_for(file_mapping.entity)
        assert all(rule.source == target and target in header for target, rule in file_mapping.rules.items())


def test_patient_mapping() -> None:
    entity, row = map_resource(
        {
            "resourceType": "Patient",
            "id": "p1",
            "extension": [{"url": "http://example.org/anything", "valueString": "x"}],
            "identifier": [
                {"type": {"coding": [{"code": "MR"}]}, "value": "M-1"},
                {"type": {"text": "Household"}, "value": "H-1"},
            ],
            "name": [{"use": "old", "family": "Old"}, {"use": "official", "family": "Fam", "given": ["Giv", "Mid"]}],
            "gender": "female",
            "birthDate": "1980-01-02",
            "telecom": [
                {"system": "phone", "value": "home-1", "use": "home", "rank": 1},
                {"system": "phone", "value": "mobile-2", "use": "mobile", "rank": 2},
                {"system": "phone", "value": "mobile-1", "use": "mobile", "rank": 1},
                {"system": "phone", "value": "old-mobile", "use": "old", "rank": 1},
                {"system": "email", "value": "work@x.org", "use": "work"},
                {"system": "email", "value": "home@x.org", "use": "home", "rank": 5},
            ],
            "address": [{"use": "home", "line": ["1 A St", "Unit 2"], "city": "C", "state": "TX", "postalCode": "7"}],
            "communication": [
                {"language": {"coding": [{"code": "en"}]}},
                {"language": {"coding": [{"code": "es"}]}, "preferred": True},
            ],
            "deceasedDateTime": "2020-05-06T07:08:09Z",
            "somethingNew": {"ignored": True},
        }
    )
    assert entity == "patients"
    assert row["patient_id"] == "p1"
    assert (row["first_name"], row["last_name"], row["birth_date"], row["sex"]) == ("Giv", "Fam", "1980-01-02", "F")
    assert (row["phone"], row["email"], row["language"]) == ("mobile-1", "home@x.org", "es")
    assert (row["address_line"], row["city"], row["state"], row["postal_code"]) == ("1 A St, Unit 2", "C", "TX", "7")
    assert (row["deceased"], row["deceased_date"]) == ("true", "2020-05-06")
    assert (row["household_key"], row["fhir_mrn"], row["guarantor_id"]) == ("H-1", "M-1", "")


def test_patient_fallbacks() -> None:
    _, row = map_resource(
        {
            "resourceType": "Patient",
            "identifier": [{"value": "ID-9"}],
            "name": [{"family": "F", "given": ["G"]}],
            "gender": "nonbinary",
            "deceasedBoolean": False,
            "communication": [{"language": {"text": "vi"}}],
            "telecom": [{"system": "sms", "value": "sms-1"}, {"system": "phone", "value": "home-1", "use": "home"}],
        }
    )
    assert (row["patient_id"], row["sex"], row["deceased"], row["language"], row["phone"]) == (
        "ID-9",
        "",
        "false",
        "vi",
        "sms-1",
    )


def test_practitioner_mapping() -> None:
    entity, row = map_resource(
        {
            "resourceType": "Practitioner",
            "id": "pr1",
            "name": [{"given": ["A", "B"], "family": "C"}],
            "qualification": [{"code": {"coding": [{"code": "x", "display": "Dentist"}]}}],
        }
    )
    assert (entity, row["provider_id"], row["name"], row["specialty"]) == ("providers", "pr1", "A B C", "Dentist")
    _, named = map_resource({"resourceType": "Practitioner", "id": "pr2", "name": [{"text": "Dr Text"}]})
    assert (named["name"], named["specialty"]) == ("Dr Text", "")


@pytest.mark.parametrize(
    ("resource", "timezone"),
    [
        (
            {
                "resourceType": "Location",
                "id": "l1",
                "name": "N",
                "extension": [
                    {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/Denver"}
                ],
                "address": {"state": "NY"},
            },
            "America/Denver",
        ),
        ({"resourceType": "Location", "id": "l1", "name": "N", "address": {"state": "ca"}}, "America/Los_Angeles"),
        ({"resourceType": "Organization", "id": "l1", "name": "N", "address": [{"state": "TX"}]}, "America/Chicago"),
        ({"resourceType": "Organization", "id": "l1", "name": "N"}, "UTC"),
    ],
)
def test_location_timezone(resource: dict, timezone: str) -> None:
    entity, row = map_resource(resource)
    assert (entity, row["location_id"], row["name"], row["timezone"]) == ("locations", "l1", "N", timezone)


def test_organization_phone_and_booking_url() -> None:
    _, row = map_resource(
        {
            "resourceType": "Organization",
            "id": "o1",
            "name": "N",
            "contact": [{"telecom": [{"system": "phone", "value": "contact-phone"}]}],
            "telecom": [{"system": "url", "value": "https://book.example"}],
            "address": [{"line": ["1 Main"], "city": "X", "state": "TX", "postalCode": "1"}],
        }
    )
    assert (row["phone"], row["booking_url"], row["address_line"]) == (
        "contact-phone",
        "https://book.example",
        "1 Main",
    )


@pytest.mark.parametrize(
    ("fhir_status", "status"),
    [
        ("booked", "booked"),
        ("pending", "booked"),
        ("arrived", "booked"),
        ("checked-in", "booked"),
        ("fulfilled", "completed"),
        ("cancelled", "cancelled"),
        ("noshow", "no_show"),
        ("entered-in-error", "entered_in_error"),
        ("waitlist", "waitlist"),
    ],
)
def test_appointment_mapping(fhir_status: str, status: str) -> None:
    entity, row = map_resource(
        {
            "resourceType": "Appointment",
            "id": "a1",
            "status": fhir_status,
            "start": "2025-01-01T09:00:00Z",
            "created": "2024-12-01T09:00:00Z",
            "cancellationDate": "2024-12-20T09:00:00Z",
            "serviceType": [{"coding": [{"code": "hyg"}]}],
            "participant": [
                {"actor": _ref("PractitionerRole", "r1")},
                {"actor": _ref("Location", "l1")},
                {"actor": _ref("Practitioner", "pr1")},
                {"actor": _ref("Patient", "p1")},
            ],
        }
    )
    assert entity == "appointments"
    assert row["status"] == status
    assert (row["appointment_id"], row["patient_id"], row["provider_id"], row["location_id"]) == (
        "a1",
        "p1",
        "pr1",
        "l1",
    )
    assert (row["scheduled_at"], row["appointment_type"], row["cancelled_at"]) == (
        "2025-01-01T09:00:00Z",
        "hyg",
        "2024-12-20T09:00:00Z",
    )


def test_encounter_mapping() -> None:
    entity, row = map_resource(
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "AMB"},
            "type": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}], "text": "Office"}],
            "subject": {"reference": "urn:uuid:p1"},
            "participant": [{"individual": _ref("Practitioner", "pr1")}],
            "period": {"start": "2024-01-02T03:04:05Z"},
            "location": [{"location": _ref("Location", "l1")}],
        }
    )
    assert entity == "encounters"
    assert row == row | {
        "encounter_id": "e1",
        "patient_id": "p1",
        "encounter_date": "2024-01-02T03:04:05Z",
        "visit_type_code": "99213",
        "visit_type_system": "CPT",
        "encounter_class": "ambulatory",
        "description": "Office",
        "provider_id": "pr1",
        "location_id": "l1",
    }
    with pytest.raises(NotLoadable, match="cancelled"):
        map_resource({"resourceType": "Encounter", "id": "e2", "status": "cancelled"})


def test_condition_procedure_observation_mapping() -> None:
    _, condition = map_resource(
        {
            "resourceType": "Condition",
            "subject": _ref("Patient", "p1"),
            "code": {
                "coding": [
                    {"system": "urn:local", "code": "L1"},
                    {"system": "http://snomed.info/sct", "code": "44054006"},
                ]
            },
            "onsetPeriod": {"start": "2015-03-01T00:00:00Z"},
            "abatementDateTime": "2016-01-01",
            "encounter": _ref("Encounter", "e1"),
        }
    )
    assert (condition["code"], condition["code_system"], condition["onset_date"], condition["resolved_date"]) == (
        "44054006",
        "SNOMED",
        "2015-03-01",
        "2016-01-01",
    )
    assert condition["encounter_id"] == "e1"
    with pytest.raises(NotLoadable):
        map_resource({"resourceType": "Condition", "verificationStatus": {"coding": [{"code": "refuted"}]}})

    entity, procedure = map_resource(
        {
            "resourceType": "Procedure",
            "status": "completed",
            "subject": _ref("Patient", "p1"),
            "code": {"coding": [{"system": "http://www.ada.org/cdt", "code": "D1110"}]},
            "performedPeriod": {"start": "2024-01-01T10:00:00Z"},
        }
    )
    assert (entity, procedure["code_system"], procedure["performed_at"]) == (
        "procedures",
        "CDT",
        "2024-01-01T10:00:00Z",
    )

    entity, observation = map_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": _ref("Patient", "p1"),
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "effectivePeriod": {"start": "2024-01-01T10:00:00Z"},
            "valueQuantity": {"value": 7.25, "unit": "%"},
        }
    )
    assert entity == "observations"
    assert (observation["code"], observation["code_system"], observation["value_numeric"], observation["unit"]) == (
        "4548-4",
        "LOINC",
        "7.25",
        "%",
    )
    _, text_value = map_resource(
        {"resourceType": "Observation", "valueCodeableConcept": {"coding": [{"display": "Never smoked"}]}}
    )
    assert text_value["value_text"] == "Never smoked"


@pytest.mark.parametrize(
    ("fhir_status", "occurrence", "status"),
    [
        ("draft", None, "ordered"),
        ("active", None, "ordered"),
        ("active", "2025-02-01T09:00:00Z", "scheduled"),
        ("on-hold", "2025-02-01T09:00:00Z", "ordered"),
        ("completed", None, "completed"),
        ("revoked", None, "cancelled"),
        ("entered-in-error", None, "cancelled"),
    ],
)
def test_service_request_mapping(fhir_status: str, occurrence: str | None, status: str) -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "id": "s1",
        "status": fhir_status,
        "subject": _ref("Patient", "p1"),
        "authoredOn": "2025-01-05T10:00:00Z",
        "performerType": {"coding": [{"display": "Periodontist"}]},
    }
    if occurrence:
        resource["occurrenceDateTime"] = occurrence
    entity, row = map_resource(resource)
    assert (entity, row["referral_id"], row["status"], row["ordered_date"], row["specialty"]) == (
        "referrals",
        "s1",
        status,
        "2025-01-05",
        "Periodontist",
    )
    assert row["scheduled_date"] == ("2025-02-01" if occurrence else "")


def test_service_request_that_is_not_a_referral_is_not_loadable() -> None:
    lab = {"resourceType": "ServiceRequest", "status": "active", "code": {"coding": [{"code": "4548-4"}]}}
    with pytest.raises(NotLoadable, match="not a referral"):
        map_resource(lab)
    _, row = map_resource({**lab, "category": [{"coding": [{"code": "3457005"}]}]})
    assert row["status"] == "ordered"


@pytest.mark.parametrize(
    ("fhir_status", "status", "completed"),
    [
        ("draft", "presented", ""),
        ("active", "accepted", ""),
        ("on-hold", "accepted", ""),
        ("completed", "completed", "2024-03-01"),
        ("revoked", "declined", ""),
    ],
)
def test_care_plan_mapping(fhir_status: str, status: str, completed: str) -> None:
    entity, row = map_resource(
        {
            "resourceType": "CarePlan",
            "id": "c1",
            "status": fhir_status,
            "subject": _ref("Patient", "p1"),
            "category": [{"coding": [{"system": "urn:careplan-category", "code": "assess-plan"}]}],
            "activity": [{"detail": {"code": {"coding": [{"system": "http://www.ada.org/cdt", "code": "D2740"}]}}}],
            "period": {"start": "2024-01-15", "end": "2024-03-01"},
            "description": "Crown",
        }
    )
    assert entity == "treatment_plans"
    assert (row["plan_id"], row["status"], row["presented_date"], row["completed_date"]) == (
        "c1",
        status,
        "2024-01-15",
        completed,
    )
    assert (row["code"], row["code_system"], row["description"]) == ("D2740", "CDT", "Crown")


@pytest.mark.parametrize(
    ("words", "kind", "channel", "status"),
    [
        ({"category": [{"coding": [{"code": "sms"}]}]}, "deny", "sms", "opt_out"),
        ({"category": [{"text": "Text messages"}]}, "permit", "sms", "opt_in"),
        ({"category": [{"text": "E-mail newsletters"}]}, "deny", "email", "opt_out"),
        ({"provision": {"action": [{"coding": [{"display": "Phone call"}]}]}}, "deny", "call", "opt_out"),
        ({"extension": [{"url": "urn:x:channel", "valueCode": "email"}]}, "permit", "email", "opt_in"),
        ({"category": [{"text": "SMS and email"}]}, "deny", "any", "opt_out"),
        ({"category": [{"text": "Patient privacy"}]}, "deny", "any", "opt_out"),
    ],
)
def test_consent_mapping(words: dict, kind: str, channel: str, status: str) -> None:
    resource = {"resourceType": "Consent", "id": "k1", "status": "active", "patient": _ref("Patient", "p1")}
    resource["dateTime"] = "2025-01-15T12:00:00Z"
    resource.update(words)
    resource["provision"] = {**resource.get("provision", {}), "type": kind}
    entity, row = map_resource(resource)
    assert (entity, row["patient_id"], row["channel"], row["status"]) == ("contact_preferences", "p1", channel, status)
    assert (row["effective_date"], row["source"]) == ("2025-01-15", "fhir:Consent/k1")


def test_consent_not_in_force() -> None:
    base = {"resourceType": "Consent", "patient": _ref("Patient", "p1")}
    with pytest.raises(NotLoadable):
        map_resource({**base, "status": "inactive", "provision": {"type": "permit"}})
    with pytest.raises(NotLoadable):
        map_resource({**base, "status": "entered-in-error", "provision": {"type": "deny"}})
    _, row = map_resource({**base, "status": "inactive", "provision": {"type": "deny"}})
    assert row["status"] == "opt_out"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"reference": "Patient/p1"}, ("Patient", "p1")),
        ({"reference": "https://fhir.example.org/r4/Patient/p1/_history/3"}, ("Patient", "p1")),
        ({"reference": "urn:uuid:abc-1"}, ("", "abc-1")),
        ({"reference": "urn:uuid:abc-1", "type": "Patient"}, ("Patient", "abc-1")),
        ({"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999"}, ("Practitioner", "999")),
        ({"identifier": {"value": "x"}, "type": "Location"}, ("Location", "x")),
        (None, ("", "")),
    ],
)
def test_parse_reference(reference: dict | None, expected: tuple[str, str]) -> None:
    assert parse_reference(reference) == expected


@pytest.mark.parametrize(
    ("url", "system"),
    [
        ("http://snomed.info/sct", "SNOMED"),
        ("http://www.ama-assn.org/go/cpt", "CPT"),
        ("https://www.ama-assn.org/go/cpt/", "CPT"),
        ("http://loinc.org", "LOINC"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "ICD10CM"),
        ("http://www.ada.org/cdt", "CDT"),
        ("https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "HCPCS"),
        ("urn:oid:2.16.840.1.113883.6.96", "SNOMED"),
        ("http://example.org/local", "LOCAL"),
        (None, "LOCAL"),
    ],
)
def test_code_system(url: str | None, system: str) -> None:
    assert code_system(url) == system


def test_rows_source_streams_lines_reports_bytes_and_marks_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    good = '{"resourceType":"Patient","id":"p1","name":[{"family":"F","given":["G"]}],"birthDate":"1990-01-01"}'
    path.write_bytes(
        b"\xef\xbb\xbf" + good.encode() + b"\r\n\n" + b"not json\n" + b"[1]\n" + b'{"resourceType":"Bundle"}\n'
        b'{"resourceType":"Patient","name":"not a list","telecom":7}\n' + b"\xff\xfe\n"
    )
    seen: list[int] = []
    header, rows = rows_source_for(path, "patients", seen.append)()
    rows = list(rows)
    assert header == header_for("patients")
    assert sum(seen) == path.stat().st_size
    assert [line for line, _ in rows] == [1, 3, 4, 5, 6, 7]
    assert len(rows[0][1]) == len(header)
    assert rows[0][1][:2] == ["p1", "G"]
    assert rows[1][1] == ["<not loaded: line is not valid JSON>"]
    assert rows[2][1] == ["<not loaded: line is not a JSON object>"]
    assert rows[3][1] == ["<not loaded: expected a Patient resource, found resourceType Bundle>"]
    assert len(rows[4][1]) == len(header)  # mistyped elements are read as absent, never raise
    assert rows[5][1] == ["<not loaded: line is not valid UTF-8>"]


def test_rows_source_for_unknown_entity() -> None:
    with pytest.raises(ValueError, match="recalls"):
        rows_source_for(BULK / "Patient.ndjson", "recalls", None)


# -- loads into the warehouse ---------------------------------------------------------------------


def _counts(summary) -> dict[str, tuple[int, int, int]]:
    return {f.file: (f.rows_read, f.rows_loaded, f.rows_quarantined) for f in summary.files}


def _quarantine(url: str, file_name: str) -> list[tuple[int, str | None, str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """select q.source_line, q.column_name, q.reason, q.record
               from raw.quarantine q join raw.load_manifest m using (load_id)
               where m.file_name = %s order by q.source_line""",
            (file_name,),
        ).fetchall()


def test_load_bulk_export(any_warehouse: str) -> None:
    summary = load_path(any_warehouse, BULK, fmt="fhir", location="clinic_a")

    assert summary.source_system == "fhir"
    assert summary.unrecognised == []  # AllergyIntolerance and PractitionerRole are ignored
    assert {f.file for f in summary.files} == set(EXPECTED_COUNTS)
    assert all(f.status == "loaded" for f in summary.files), [(f.file, f.message) for f in summary.files]
    assert _counts(summary) == EXPECTED_COUNTS
    assert all(read == loaded + quarantined for read, loaded, quarantined in EXPECTED_COUNTS.values())
    assert summary.totals["rows_read"] == 42

    patients_quarantine = _quarantine(any_warehouse, "Patient.ndjson")
    assert [(line, column) for line, column, _, _ in patients_quarantine] == [(5, None), (9, None), (10, "birth_date")]
    assert patients_quarantine[0][3] == "<not loaded: line is not valid JSON>"
    assert "fewer than the header" in patients_quarantine[0][2]
    assert patients_quarantine[1][3] == "<not loaded: expected a Patient resource, found resourceType Practitioner>"
    assert patients_quarantine[2][2] == "birth_date: required value is missing"

    [(line, column, reason, _)] = _quarantine(any_warehouse, "Appointment.ndjson")
    assert (line, column) == (5, "status")
    assert reason.startswith("status: value not allowed")

    [(line, _, _, record)] = _quarantine(any_warehouse, "Encounter.ndjson")
    assert (line, record) == (4, "<not loaded: Encounter status cancelled is not a completed visit>")
    [(line, _, _, record)] = _quarantine(any_warehouse, "ServiceRequest.ndjson")
    assert line == 4 and "not a referral" in record

    with psycopg.connect(any_warehouse) as conn:
        patients = {
            row[0]: row[1:]
            for row in conn.execute(
                """select patient_id, phone_e164, phone_is_valid, email_normalised, deceased, deceased_date::text,
                          language, sex, household_key, address_line, extra->>'fhir_mrn', location_id_loaded
                   from raw.patients"""
            )
        }
        assert set(patients) == {"pat-1", "pat-2", "pat-3", "pat-4", "pat-5", "MRN-1006"}
        assert patients["pat-1"] == (
            "+15125550102",  # the rank-2 mobile: mobiles beat home, then rank
            True,
            "Testa.Patient@example.com",  # the home email beats the rank-1 work email
            None,
            None,
            "en-US",
            "F",
            "HH-7",
            "100 Test Lane, Apt 2",
            "MRN-1001",
            "clinic_a",
        )
        assert patients["pat-2"][:6] == ("+17205550111", True, None, False, None, "es")
        assert patients["pat-3"][:6] == ("+15125550103", True, None, True, None, None)  # sms beats a work phone
        assert patients["pat-4"][:6] == (None, False, "fourth@example.org", True, "2023-06-01", None)
        assert patients["pat-5"][5:7] == ("vi", "U")
        assert patients["MRN-1006"][3] is None

        locations = dict(conn.execute("select location_id, timezone from raw.locations").fetchall())
        assert locations == {
            "org-1": "America/Chicago",
            "loc-1": "America/Denver",
            "loc-2": "UTC",
            "loc-3": "America/New_York",
        }
        appointments = dict(conn.execute("select appointment_id, status from raw.appointments").fetchall())
        assert appointments == {"appt-1": "booked", "appt-2": "completed", "appt-3": "cancelled", "appt-4": "no_show"}
        assert conn.execute(
            "select value_numeric::text, unit from raw.observations where code = '4548-4' and patient_id = 'pat-1'"
        ).fetchone() == ("7.2", "%")
        preferences = conn.execute("select patient_id, channel, status from raw.contact_preferences").fetchall()
        assert sorted(preferences) == [("pat-1", "sms", "opt_out"), ("pat-2", "email", "opt_in")]
        encounters = conn.execute(
            """select encounter_id, visit_type_code, visit_type_system, encounter_class, location_id,
                      extra->>'fhir_status'
               from raw.encounters order by encounter_id"""
        ).fetchall()
        assert encounters == [
            ("enc-1", "185349003", "SNOMED", "ambulatory", "loc-1", "finished"),
            ("enc-2", "D0120", "CDT", "dental", "org-1", "finished"),
            ("enc-3", "99213", "CPT", "ambulatory", None, "finished"),
        ]
        referrals = dict(conn.execute("select referral_id, status from raw.referrals").fetchall())
        assert referrals == {"sr-1": "scheduled", "sr-2": "ordered", "sr-3": "completed"}
        plans = dict(conn.execute("select plan_id, status from raw.treatment_plans").fetchall())
        assert plans == {"cp-1": "accepted", "cp-2": "completed"}


def test_reloading_the_export_is_a_no_op(any_warehouse: str) -> None:
    first = load_path(any_warehouse, BULK, fmt="fhir", location="clinic_a")
    second = load_path(any_warehouse, BULK, fmt="fhir", location="clinic_a")

    assert first.totals["loaded"] == len(EXPECTED_COUNTS)
    assert [f.status for f in second.files] == ["skipped_duplicate"] * len(EXPECTED_COUNTS)
    assert {f.load_id for f in second.files} == {f.load_id for f in first.files}
    with psycopg.connect(any_warehouse) as conn:
        assert conn.execute("select count(*) from raw.patients").fetchone()[0] == 6
        assert conn.execute("select count(*) from raw.load_manifest").fetchone()[0] == len(EXPECTED_COUNTS)


def test_folder_without_optional_resource_files_loads(any_warehouse: str, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for name in ("Patient.ndjson", "Appointment.ndjson"):
        shutil.copy(BULK / name, export / f"1.{name.replace('.ndjson', '.000.ndjson')}")

    summary = load_path(any_warehouse, export, fmt="fhir", location="clinic_b")

    assert summary.unrecognised == []
    assert _counts(summary) == {
        "1.Patient.000.ndjson": EXPECTED_COUNTS["Patient.ndjson"],
        "1.Appointment.000.ndjson": EXPECTED_COUNTS["Appointment.ndjson"],
    }
    assert [f.entity for f in summary.files] == ["patients", "appointments"]

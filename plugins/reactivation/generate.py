"""Seeded synthetic extract generator: ``reactivation generate --patients N --locations K --seed S OUT``.

Why: the pipeline needs realistic, reproducible test data at any scale (1,000 to 1,000,000 patients)
whose flaws are known exactly, so that loading, identity matching and care-gap logic can be scored
against ground truth instead of eyeballed.

What it writes:

* ``OUT/<location_id>/<entity>.csv`` for ``loc_01`` .. ``loc_K``: each folder is one practice
  location's extract in the native CSV layout (one file per contract entity, header = the
  entity's contract columns in order). Even-numbered locations (loc_01, loc_03, ...) are dental,
  the others medical, with matching visit types and codes (CDT / CPT / HCPCS, ICD-10-CM, LOINC).
* ``OUT/truth/duplicates.csv`` (person_key, location_id, patient_id): every person registered more
  than once, so identity matching can be scored for precision and recall.
* ``OUT/expected.json``: per location and in total, the rows per entity file, the rows the loader must
  quarantine per entity, the exact count of every kind of deliberate dirt, and ``truth`` (the
  duplicate groups of ``truth/duplicates.csv``).

``--patients`` counts people; the files hold a few percent more patient records because some people
are registered twice. History is about ten rows per person across the entity files.

How: people are generated in chunks of ``CHUNK_PERSONS``; each chunk has its own ``random.Random``
seeded from (seed, chunk number) and needs nothing from other chunks (duplicates and households are
made within the chunk). So memory is bounded by one chunk, chunks can be generated in parallel worker
processes, and the output is byte-identical for a given seed whatever the number of workers.
Every dirty value is counted at the moment it is written, so the counts are exact, not estimates.

All names are drawn from made-up lists of common given names and surnames; emails use the reserved
``example.*`` domains. Phone numbers are valid-looking US numbers (not 555) so that phone validation
accepts them: never point a real messaging provider at generated data.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import multiprocessing
import os
import random
import time
import unicodedata
from bisect import bisect
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from reactivation.ingest.contract import ENTITIES

DEFAULT_AS_OF = date(2026, 11, 1)
CHUNK_PERSONS = 20_000
MAX_LOCATIONS = 99
MAX_PERSONS = 5_000_000  # keeps each location's patient id range distinct
DORMANT_DAYS = 548  # 18 months

ENTITY_NAMES: tuple[str, ...] = tuple(ENTITIES)
(
    E_LOC,
    E_PROV,
    E_PAT,
    E_PREF,
    E_APPT,
    E_ENC,
    E_COND,
    E_PROC,
    E_OBS,
    E_REF,
    E_PLAN,
    E_RECALL,
    E_HOLD,
) = (
    ENTITY_NAMES.index(name)
    for name in (
        "locations",
        "providers",
        "patients",
        "contact_preferences",
        "appointments",
        "encounters",
        "conditions",
        "procedures",
        "observations",
        "referrals",
        "treatment_plans",
        "recalls",
        "holds",
    )
)

# The column order the row tuples below are built in; checked against the contract before writing,
# so a contract change fails loudly here instead of writing shifted columns.
GENERATED_COLUMNS: dict[str, tuple[str, ...]] = {
    "locations": (
        "location_id",
        "name",
        "timezone",
        "phone",
        "address_line",
        "city",
        "state",
        "postal_code",
        "booking_url",
    ),
    "providers": ("provider_id", "name", "specialty", "location_id"),
    "patients": (
        "patient_id",
        "first_name",
        "last_name",
        "birth_date",
        "sex",
        "language",
        "phone",
        "email",
        "address_line",
        "city",
        "state",
        "postal_code",
        "deceased",
        "deceased_date",
        "household_key",
        "guarantor_id",
        "home_location_id",
    ),
    "contact_preferences": ("patient_id", "channel", "status", "effective_date", "source"),
    "appointments": (
        "appointment_id",
        "patient_id",
        "status",
        "scheduled_at",
        "appointment_type",
        "provider_id",
        "location_id",
        "created_at",
        "cancelled_at",
    ),
    "encounters": (
        "encounter_id",
        "patient_id",
        "encounter_date",
        "visit_type_code",
        "visit_type_system",
        "encounter_class",
        "description",
        "provider_id",
        "location_id",
    ),
    "conditions": ("patient_id", "code", "code_system", "onset_date", "resolved_date", "encounter_id", "description"),
    "procedures": ("patient_id", "code", "code_system", "performed_at", "encounter_id", "description"),
    "observations": (
        "patient_id",
        "code",
        "code_system",
        "observed_at",
        "value_numeric",
        "value_text",
        "unit",
        "encounter_id",
    ),
    "referrals": (
        "referral_id",
        "patient_id",
        "status",
        "ordered_date",
        "specialty",
        "scheduled_date",
        "completed_date",
    ),
    "treatment_plans": (
        "plan_id",
        "patient_id",
        "status",
        "presented_date",
        "code",
        "code_system",
        "description",
        "completed_date",
    ),
    "recalls": ("patient_id", "recall_type", "due_date", "recall_id"),
    "holds": ("patient_id", "hold_type", "start_date", "end_date", "reason"),
}

# Dirt categories, in the order expected.json lists them.
DIRT_KEYS: tuple[str, ...] = (
    "duplicate_records_cross_location",
    "duplicate_records_within_location",
    "bad_phones",
    "bad_emails",
    "sms_opt_outs",
    "email_opt_outs",
    "call_opt_outs",
    "deceased",
    "future_appointments",
    "not_rebooked",
    "open_referrals",
    "unscheduled_treatment_plans",
    "not_now_recalls",
    "do_not_contact_holds",
    "clinical_holds",
    "invalid_appointment_dates",
    "encounters_missing_patient_id",
    "dormant_18_months",
    "household_members",
)

# -- made-up name lists (common given names and surnames; no real people) ----------------------


def _words(text: str) -> list[str]:
    """Split a whitespace-separated word list (keeps the long lists below compact and readable)."""
    return text.split()


_FEMALE_EN = _words(
    """Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret
Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon Laura
Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine Debra Rachel
Carolyn Janet Catherine Heather Diane Olivia Julie Joyce Victoria Kelly Christina Lauren Joan Evelyn Judith Megan
Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara Abigail"""
)
_FEMALE_ES = _words(
    """María Guadalupe Rosa Carmen Ana Lucía Sofía Valentina Camila Isabel Ximena Juana Alejandra Verónica
Adriana Marisol Yesenia Leticia Beatriz Graciela Lourdes Esperanza Paola Daniela Gabriela Mariana Elena Dolores
Josefina Raquel"""
)
_MALE_EN = _words(
    """James Robert John Michael David William Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony
Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary
Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Frank Patrick Raymond
Jack Dennis Jerry Tyler Aaron Henry Adam Douglas Nathan Peter Zachary Kyle Walter Harold Jeremy Ethan Carl Keith
Roger Gerald Christian Terry Sean"""
)
_MALE_ES = _words(
    """José Juan Luis Carlos Jesús Francisco Miguel Alejandro Manuel Pedro Ricardo Fernando Javier Sergio
Eduardo Roberto Rafael Alberto Mario Héctor Enrique Arturo Raúl Óscar Ramón Andrés Diego Mateo Santiago Emilio
"""
)
_LAST_EN = _words(
    """Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Jackson Martin Lee
Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill Green Adams Nelson Baker Hall
Campbell Mitchell Carter Roberts Phillips Evans Turner Parker Collins Edwards Stewart Morris Murphy Cook Rogers Morgan
Peterson Cooper Reed Bailey Bell Kelly Howard Ward Cox Richardson Wood Watson Brooks Bennett Gray James Hughes Price
Sanders Myers Long Ross Foster Powell Jenkins Perry Russell Sullivan Fisher Henderson Coleman Simmons Patterson Jordan
Reynolds Hamilton Graham Wallace Cole West Stone Hayes Ellis Gibson Marshall Owens Harrison Kennedy Wells Tucker
Porter Hunter Hicks Crawford Henry Boyd Mason Warren Dixon Burns Gordon Shaw Holmes Rice Robertson Hunt Black Daniels
Palmer Mills Grant Knight Ferguson Rose Hawkins Dunn Perkins Hudson Spencer Stephens Pierce Hansen Snyder Carlson
Larson Olson Whitfield Ashby Brennan Calloway Delaney Eastman Fairchild Galloway Hargrove Ingram Jessup Kendrick
Langford Merriweather Norwood Oakley Pemberton Quimby Radcliffe Sherwood Thornton Underwood Vance Whitaker Yardley
Abernathy Blackwell Cartwright Dalton Ellsworth Fenwick Garland Holloway Iverson Jansen Kessler Lockhart Montgomery
Nash Osborne Prescott Quinlan Rowley Sheffield Tillman Upton Voss Winslow Yorke Zimmerman Novak Kowalski Nguyen Tran
Pham Kim Park Chen Wang Li Patel Shah Singh Khan Ali Cohen Levy Schmidt Weber Becker Hoffman Schultz Keller Bauer
Wagner Fischer Meyer Richter Klein Wolf Neumann Schwarz Braun Hartmann Krueger Lange Werner Lehmann O'Brien O'Connor
McCarthy McDonald Gallagher Doyle Byrne Walsh Quinn Fitzgerald Donnelly Sweeney Barlow Crane"""
)
_LAST_ES = _words(
    """García Rodríguez Martínez Hernández López González Pérez Sánchez Ramírez Torres Flores Rivera Gómez Díaz
Cruz Morales Reyes Gutiérrez Ortiz Chávez Ramos Ruiz Álvarez Mendoza Castillo Jiménez Moreno Romero Herrera Medina
Aguilar Vargas Castro Guzmán Fernández Juárez Méndez Salazar Soto Delgado Peña Ríos Vásquez Contreras Sandoval
Guerrero Estrada Núñez Maldonado Domínguez Cortez Navarro Campos Vega Acosta Cabrera Fuentes Espinoza Molina Silva
Rojas Orozco Ibarra Luna Figueroa Valdez Cervantes Zamora Villanueva Treviño"""
)

_NICKNAMES: dict[str, tuple[str, ...]] = {
    "William": ("Bill", "Will", "Billy"),
    "Robert": ("Bob", "Rob", "Bobby"),
    "Richard": ("Rick", "Rich"),
    "Elizabeth": ("Liz", "Beth", "Liza"),
    "Margaret": ("Maggie", "Peggy"),
    "Katherine": ("Kate", "Kathy"),
    "Catherine": ("Cathy", "Cate"),
    "Jennifer": ("Jen", "Jenny"),
    "Michael": ("Mike",),
    "James": ("Jim", "Jimmy"),
    "Joseph": ("Joe",),
    "Thomas": ("Tom", "Tommy"),
    "Christopher": ("Chris",),
    "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",),
    "Anthony": ("Tony",),
    "Steven": ("Steve",),
    "Stephen": ("Steve",),
    "Andrew": ("Andy", "Drew"),
    "Joshua": ("Josh",),
    "Kenneth": ("Ken", "Kenny"),
    "Timothy": ("Tim",),
    "Edward": ("Ed", "Eddie"),
    "Jeffrey": ("Jeff",),
    "Nicholas": ("Nick",),
    "Jonathan": ("Jon",),
    "Benjamin": ("Ben",),
    "Samuel": ("Sam",),
    "Gregory": ("Greg",),
    "Alexander": ("Alex",),
    "Patrick": ("Pat",),
    "Zachary": ("Zach",),
    "Donald": ("Don",),
    "Ronald": ("Ron",),
    "Raymond": ("Ray",),
    "Gerald": ("Jerry",),
    "Patricia": ("Pat", "Patty", "Trish"),
    "Susan": ("Sue", "Suzy"),
    "Kimberly": ("Kim",),
    "Deborah": ("Debbie", "Deb"),
    "Debra": ("Debbie",),
    "Rebecca": ("Becky",),
    "Cynthia": ("Cindy",),
    "Kathleen": ("Kathy",),
    "Pamela": ("Pam",),
    "Christine": ("Chris", "Chrissy"),
    "Christina": ("Tina",),
    "Samantha": ("Sam",),
    "Victoria": ("Vicky", "Tori"),
    "Jacqueline": ("Jackie",),
    "Judith": ("Judy",),
    "Abigail": ("Abby",),
    "Francisco": ("Paco", "Pancho"),
    "José": ("Pepe",),
    "Guadalupe": ("Lupe",),
    "Alejandro": ("Alex",),
    "Alejandra": ("Alex",),
    "Jesús": ("Chuy",),
    "Eduardo": ("Lalo",),
    "Enrique": ("Kike",),
    "Roberto": ("Beto",),
    "Dolores": ("Lola",),
    "Josefina": ("Josie",),
    "Graciela": ("Chela",),
    "Manuel": ("Manny",),
    "Ricardo": ("Ricky",),
    "Rafael": ("Rafa",),
}

_STREETS = _words(
    """Oak Maple Cedar Pine Elm Walnut Willow Birch Aspen Hickory Juniper Magnolia Sycamore Chestnut Poplar
Spruce Laurel Linden Cherry Dogwood Main Church Mill Park Lake Hill River Spring Meadow Prairie Sunset Highland
Ridge Valley Forest Garden Orchard Harbor Center Union Franklin Jefferson Lincoln Madison Washington"""
)
_STREET_SUFFIXES = ("St", "Ave", "Rd", "Dr", "Ln", "Ct", "Blvd", "Way", "Pl", "Ter")
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com", "inbox.example.net")

# Clearly invalid phone entries (each fails phonenumbers validation) and malformed emails.
_BAD_PHONES = (
    "123",
    "(000) 000-0000",
    "call me",
    "000-000-0000",
    "n/a",
    "none",
    "1234567",
    "unknown",
    "999-999-9999",
    "ask daughter",
    "see chart",
)
_BAD_DATES = ("2024-13-45", "2023-02-30T10:00:00", "2025-00-12 09:15", "2024-06-31T14:00:00")

# (city, state, IANA time zone, area codes, ZIP prefix); the first five cover the five zones.
_CITIES: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("Omaha", "NE", "America/Chicago", ("402", "531"), "681"),
    ("Brooklyn", "NY", "America/New_York", ("718", "347"), "112"),
    ("Denver", "CO", "America/Denver", ("303", "720"), "802"),
    ("Sacramento", "CA", "America/Los_Angeles", ("916", "279"), "958"),
    ("Phoenix", "AZ", "America/Phoenix", ("602", "480"), "850"),
    ("Austin", "TX", "America/Chicago", ("512", "737"), "787"),
    ("Columbus", "OH", "America/New_York", ("614", "380"), "432"),
    ("Albuquerque", "NM", "America/Denver", ("505",), "871"),
    ("Portland", "OR", "America/Los_Angeles", ("503", "971"), "972"),
    ("Tucson", "AZ", "America/Phoenix", ("520",), "857"),
    ("Nashville", "TN", "America/Chicago", ("615", "629"), "372"),
    ("Atlanta", "GA", "America/New_York", ("404", "470"), "303"),
)
_ALL_AREA_CODES = (*(code for city in _CITIES for code in city[3]), "212", "919", "317", "608", "414")
_AREAS = (
    "Riverside", "Northside", "Lakeview", "Westgate", "Cedar Hills", "Maple Grove", "Southpoint", "Eastbrook",
    "Fairview", "Oak Park", "Hillcrest", "Brookside", "Pinecrest", "Meadowbrook", "Clearwater", "Stonebridge",
    "Willow Creek", "Parkside", "Highland", "Sunnyvale",
)  # fmt: skip
_DENTAL_SUFFIXES = ("Family Dental", "Dental Care", "Dental Group", "Smiles Dental")
_MEDICAL_SUFFIXES = ("Medical Group", "Family Medicine", "Primary Care", "Health Center")

_SLOTS = tuple(f"T{h:02d}:{m:02d}:00" for h in range(8, 17) for m in (0, 15, 30, 45))


def _ascii(text: str) -> str:
    """Lower-case ASCII letters only (for email local parts: the loader's email check is ASCII)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return "".join(ch for ch in folded if "a" <= ch <= "z")


_FIRST_ASCII = {name: _ascii(name) for name in _FEMALE_EN + _FEMALE_ES + _MALE_EN + _MALE_ES}
_LAST_ASCII = {name: _ascii(name) for name in _LAST_EN + _LAST_ES}


# -- locations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationSpec:
    """One practice location: its identity, specialty and the providers who work there."""

    index: int
    location_id: str
    kind: str  # dental | medical
    name: str
    timezone: str
    city: str
    state: str
    zip3: str
    area_codes: tuple[str, ...]
    phone: str
    address_line: str
    booking_url: str
    providers: tuple[tuple[str, str, str], ...]  # (provider_id, name, specialty)


def build_locations(count: int) -> list[LocationSpec]:
    """The K locations (fixed for a given K, independent of the seed): half dental, half medical."""
    specs = []
    rng = random.Random("reactivation-generate/locations")
    for i in range(count):
        city, state, tz, area_codes, zip3 = _CITIES[i % len(_CITIES)]
        kind = "dental" if i % 2 == 0 else "medical"
        area = _AREAS[i % len(_AREAS)]
        suffixes = _DENTAL_SUFFIXES if kind == "dental" else _MEDICAL_SUFFIXES
        name = f"{area} {suffixes[(i // 2) % len(suffixes)]}"
        location_id = f"loc_{i + 1:02d}"
        slug = name.lower().replace(" ", "")
        n_providers = 4 + i % 4
        providers = []
        for j in range(n_providers):
            first = rng.choice(_FEMALE_EN + _MALE_EN + _FEMALE_ES + _MALE_ES)
            last = rng.choice(_LAST_EN + _LAST_ES)
            if kind == "dental":
                specialty = "Dental Hygiene" if j % 2 else "General Dentistry"
                title = f"{first} {last}, RDH" if j % 2 else f"Dr. {first} {last}, DDS"
            else:
                specialty = ("Family Medicine", "Internal Medicine", "Family Nurse Practitioner")[j % 3]
                title = f"{first} {last}, FNP" if j % 3 == 2 else f"Dr. {first} {last}, MD"
            providers.append((f"{location_id}-pr{j + 1:02d}", title, specialty))
        exchange = 200 + rng.randrange(800)
        while exchange % 100 == 11 or exchange == 555:
            exchange = 200 + rng.randrange(800)
        specs.append(
            LocationSpec(
                index=i,
                location_id=location_id,
                kind=kind,
                name=name,
                timezone=tz,
                city=city,
                state=state,
                zip3=zip3,
                area_codes=area_codes,
                phone=f"({area_codes[0]}) {exchange} {rng.randrange(10000):04d}",
                address_line=f"{100 + rng.randrange(9000)} {rng.choice(_STREETS)} {rng.choice(_STREET_SUFFIXES)}",
                booking_url=f"https://book.example.com/{slug}-{location_id.replace('_', '')}",
                providers=tuple(providers),
            )
        )
    return specs


# -- one chunk of people ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Everything a worker needs to generate any chunk (picklable)."""

    seed: int
    as_of: date
    persons: int
    locations: tuple[LocationSpec, ...]


@dataclass
class ChunkResult:
    """One chunk's CSV text per (location, entity), exact counts per location, and duplicate truth rows."""

    chunk: int
    texts: list[list[str]]
    rows: list[list[int]]
    quarantined: list[list[int]]
    dirt: list[dict[str, int]]
    truth: list[tuple[str, str, str]] = field(default_factory=list)


class _ChunkBuilder:
    """Generates the people of one chunk. Deterministic given (seed, chunk)."""

    def __init__(self, plan: _Plan, chunk: int) -> None:
        self.plan = plan
        self.chunk = chunk
        self.rng = random.Random(f"reactivation-generate/{plan.seed}/{chunk}")
        self.rand = self.rng.random
        self.as_of = plan.as_of.toordinal()
        self.base = self.as_of - 97 * 366
        self.dates = [date.fromordinal(o).isoformat() for o in range(self.base, self.as_of + 400)]
        self.locations = plan.locations
        k = len(self.locations)
        self.rows: list[list[list[tuple]]] = [[[] for _ in ENTITY_NAMES] for _ in range(k)]
        self.quarantined = [[0] * len(ENTITY_NAMES) for _ in range(k)]
        self.dirt = [dict.fromkeys(DIRT_KEYS, 0) for _ in range(k)]
        self.truth: list[tuple[str, str, str]] = []
        self.next_id = [0] * k
        weights = [1.0 + 0.5 * ((i * 7) % 3) for i in range(k)]
        total = sum(weights)
        acc = 0.0
        self.cumulative = []
        for w in weights:
            acc += w / total
            self.cumulative.append(acc)
        # In the first chunk, force one quarantinable appointment and encounter per location so a
        # small extract always exercises the quarantine path.
        self.force_bad_appt = [chunk == 0] * k
        self.force_bad_enc = [chunk == 0] * k

    # helpers ---------------------------------------------------------------------------------

    def d(self, ordinal: int) -> str:
        return self.dates[ordinal - self.base]

    def ts(self, ordinal: int) -> str:
        return self.dates[ordinal - self.base] + _SLOTS[int(self.rand() * len(_SLOTS))]

    def pick(self, seq):
        return seq[int(self.rand() * len(seq))]

    def new_patient_id(self, loc: int) -> str:
        """A number unique within the location: each location's system numbers from its own range."""
        self.next_id[loc] += 1
        return str((loc + 1) * 10_000_000 + self.chunk * 50_000 + self.next_id[loc])

    def phone_digits(self, loc: LocationSpec) -> str:
        rand = self.rand
        area = self.pick(loc.area_codes) if rand() < 0.9 else self.pick(_ALL_AREA_CODES)
        exchange = 200 + int(rand() * 800)
        while exchange % 100 == 11 or exchange == 555:
            exchange = 200 + int(rand() * 800)
        return f"{area}{exchange}{int(rand() * 10000):04d}"

    @staticmethod
    def format_phone(digits: str, style: int) -> str:
        a, e, s = digits[:3], digits[3:6], digits[6:]
        if style == 0:
            return f"{a}-{e}-{s}"
        if style == 1:
            return f"({a}) {e}-{s}"
        if style == 2:
            return f"({a}) {e} {s}"
        if style == 3:
            return f"+1 {a} {e} {s}"
        if style == 4:
            return digits
        return f"{a}.{e}.{s}"

    def email_for(self, first: str, last: str, birth_year: int) -> str:
        f, la = _FIRST_ASCII.get(first) or _ascii(first) or "pt", _ascii_last(last)
        form = int(self.rand() * 5)
        if form == 0:
            local = f"{f}.{la}"
        elif form == 1:
            local = f"{f}{la}"
        elif form == 2:
            local = f"{f[0]}{la}{int(self.rand() * 100)}"
        elif form == 3:
            local = f"{f}_{la}{birth_year % 100:02d}"
        else:
            local = f"{la}.{f}"
        return f"{local}@{self.pick(_EMAIL_DOMAINS)}"

    def bad_email(self, first: str, last: str) -> str:
        f, la = _FIRST_ASCII.get(first) or _ascii(first) or "pt", _ascii_last(last)
        domain = self.pick(_EMAIL_DOMAINS)
        kind = int(self.rand() * 4)
        if kind == 0:
            return f"{f}.{la}{domain}"  # missing @
        if kind == 1:
            return f"{f}..{la}@{domain}"  # double dot in the local part
        if kind == 2:
            return f"{f}.{la}@{domain.replace('.', '..', 1)}"  # double dot in the domain
        return f"{f} {la}@{domain}"  # space

    # people ----------------------------------------------------------------------------------

    def run(self, first_person: int, count: int) -> ChunkResult:
        rand = self.rand
        k = len(self.locations)
        prev: dict | None = None
        for offset in range(count):
            person_key = f"P{first_person + offset + 1:07d}"
            joins_household = prev is not None and rand() < 0.2
            home = prev["home"] if joins_household else bisect(self.cumulative, rand())
            home = min(home, k - 1)
            person = self.make_person(self.locations[home], prev if joins_household else None)
            person["home"] = home
            records = [(home, None)]
            r = rand()
            if k > 1 and r < 0.03:
                other = int(rand() * (k - 1))
                records.append((other + 1 if other >= home else other, "cross"))
            elif r < 0.04:
                records.append((home, "within"))
            ids = []
            for loc_index, dup_kind in records:
                pid = self.write_record(person, loc_index, dup_kind, joins_household)
                ids.append((loc_index, pid))
                if dup_kind is None:
                    person["patient_id"] = pid
            person["guarantor_pid"] = (
                person["patient_id"] if person["age"] >= 18 else (person["household"] or {}).get("guarantor_pid", "")
            )
            if len(records) > 1:
                for loc_index, pid in ids:
                    self.truth.append((person_key, self.locations[loc_index].location_id, pid))
            prev = person

        texts = []
        for loc_rows in self.rows:
            loc_texts = []
            for entity_rows in loc_rows:
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\n").writerows(entity_rows)
                loc_texts.append(buffer.getvalue())
            texts.append(loc_texts)
        return ChunkResult(
            chunk=self.chunk,
            texts=texts,
            rows=[[len(entity_rows) for entity_rows in loc_rows] for loc_rows in self.rows],
            quarantined=self.quarantined,
            dirt=self.dirt,
            truth=self.truth,
        )

    def make_person(self, loc: LocationSpec, household: dict | None) -> dict:
        """Demographics and contact details of one person (shared by all their records)."""
        rand = self.rand
        r = rand()
        sex = "F" if r < 0.505 else "M" if r < 0.99 else "O" if r < 0.995 else "U"
        spanish_language = rand() < 0.15
        spanish_names = rand() < (0.9 if spanish_language else 0.12)
        female = sex == "F" or (sex in "OU" and rand() < 0.5)
        if spanish_names:
            first = self.pick(_FEMALE_ES if female else _MALE_ES)
            last = self.pick(_LAST_ES)
            if rand() < 0.1:
                last = f"{last} {self.pick(_LAST_ES)}"
        else:
            first = self.pick(_FEMALE_EN if female else _MALE_EN)
            last = self.pick(_LAST_EN)
        r = rand()
        if household is not None and household["age"] >= 25 and r < 0.45:
            age = int(rand() * 18)  # a child of the household
        elif r < 0.18:
            age = int(rand() * 18)
        elif r < 0.78:
            age = 18 + int(rand() * 47)
        else:
            age = 65 + int(rand() * 31)
        birth = self.as_of - int(age * 365.25) - 20 - int(rand() * 340)
        r = rand()
        phone, phone_bad = "", False
        if r < 0.04:
            phone, phone_bad = self.pick(_BAD_PHONES), True
        elif r < 0.60:
            phone = self.phone_digits(loc)
        r = rand()
        email, email_bad = "", False
        if r < 0.03:
            email, email_bad = self.bad_email(first, last), True
        elif r < 0.58:
            email = self.email_for(first, last, date.fromordinal(birth).year)
        address = f"{100 + int(rand() * 9800)} {self.pick(_STREETS)} {self.pick(_STREET_SUFFIXES)}"
        if rand() < 0.1:
            address += f" Apt {1 + int(rand() * 30)}{self.pick('ABCD')}"
        postal = f"{loc.zip3}{int(rand() * 100):02d}"
        if household is not None:
            last = household["last"]
            address, postal = household["address"], household["postal"]
            if (age < 18 or rand() < 0.4) and household["phone"]:
                phone, phone_bad = household["phone"], household["phone_bad"]
            if age < 14:
                email, email_bad = "", False
        return {
            "first": first,
            "last": last,
            "sex": sex,
            "language": "es" if spanish_language else "en",
            "age": age,
            "birth": birth,
            "phone": phone,
            "phone_bad": phone_bad,
            "phone_style": int(rand() * 6),
            "email": email,
            "email_bad": email_bad,
            "address": address,
            "postal": postal,
            "household": household,
        }

    def variant_first_name(self, first: str) -> str:
        """A nickname or a typo of ``first`` (how a second registration of the same person differs)."""
        rand = self.rand
        r = rand()
        nicknames = _NICKNAMES.get(first)
        if nicknames and r < 0.5:
            return self.pick(nicknames)
        if r < 0.8 or not nicknames:
            ascii_first = unicodedata.normalize("NFKD", first).encode("ascii", "ignore").decode("ascii")
            if ascii_first != first and rand() < 0.5:
                return ascii_first  # accent dropped
            if len(first) < 4:
                return first + first[-1]
            i = 1 + int(rand() * (len(first) - 2))
            kind = int(rand() * 3)
            if kind == 0:
                return first[:i] + first[i + 1] + first[i] + first[i + 2 :]  # swapped letters
            if kind == 1:
                return first[:i] + first[i + 1 :]  # dropped letter
            return first[:i] + first[i] + first[i:]  # doubled letter
        return first

    def write_record(self, person: dict, loc_index: int, dup_kind: str | None, in_household: bool) -> str:
        """Write one patient record (the person's own, or a duplicate registration) and its history."""
        rand = self.rand
        loc = self.locations[loc_index]
        dirt = self.dirt[loc_index]
        pid = self.new_patient_id(loc_index)
        first, phone, email = person["first"], person["phone"], person["email"]
        if person["phone"] and not person["phone_bad"]:
            style = person["phone_style"]
            if dup_kind is not None:
                style = (style + 1 + int(rand() * 5)) % 6
            phone = self.format_phone(phone, style)
        if dup_kind is not None:
            dirt[
                "duplicate_records_cross_location" if dup_kind == "cross" else "duplicate_records_within_location"
            ] += 1
            first = self.variant_first_name(first)
            if email and not person["email_bad"] and rand() < 0.6:
                local, at, domain = email.partition("@")
                email = (
                    email.upper()
                    if rand() < 0.3
                    else ".".join(p.capitalize() for p in local.split(".")) + at + domain.capitalize()
                )
        if person["phone_bad"]:
            dirt["bad_phones"] += 1
        if person["email_bad"]:
            dirt["bad_emails"] += 1
        if in_household and dup_kind is None:
            dirt["household_members"] += 1

        history = self.write_history(pid, loc, loc_index, person, dup_kind)
        deceased, deceased_date = "false", ""
        if history["deceased_on"] is not None:
            deceased, deceased_date = "true", self.d(history["deceased_on"])
            dirt["deceased"] += 1
        household_key = ""
        guarantor_id = ""
        if loc.kind == "dental":
            household_key = self._household_key(person)
            if person["age"] < 18 and person["household"] is not None and dup_kind is None:
                guarantor_id = person["household"].get("guarantor_pid", "")
        self.rows[loc_index][E_PAT].append(
            (
                pid,
                first,
                person["last"],
                self.d(person["birth"]),
                person["sex"],
                person["language"],
                phone,
                email,
                person["address"],
                loc.city,
                loc.state,
                person["postal"],
                deceased,
                deceased_date,
                household_key,
                guarantor_id,
                "",
            )
        )
        return pid

    def _household_key(self, person: dict) -> str:
        """Account number shared by a household (dental practices bill by account)."""
        head = person
        while head.get("household") is not None:
            head = head["household"]
        return head.setdefault("account", f"AC{self.chunk:03d}{int(self.rand() * 10**7):07d}")

    # history ---------------------------------------------------------------------------------

    def write_history(self, pid: str, loc: LocationSpec, loc_index: int, person: dict, dup_kind: str | None) -> dict:
        """Appointments, encounters and everything hanging off them for one patient record."""
        rand = self.rand
        as_of = self.as_of
        rows = self.rows[loc_index]
        dirt = self.dirt[loc_index]
        dental = loc.kind == "dental"
        age = person["age"]
        sex = person["sex"]
        providers = loc.providers
        location_id = loc.location_id

        # Timeline: the last completed visit, then earlier ones going back.
        if rand() < 0.55:
            last = as_of - 1 - int(rand() * DORMANT_DAYS)
        else:
            last = as_of - DORMANT_DAYS - 1 - int(rand() * (1461 - DORMANT_DAYS))
        last = max(last, person["birth"] + 7)  # infants: no visits before birth
        if as_of - last > DORMANT_DAYS:
            dirt["dormant_18_months"] += 1
        r = rand()
        n_visits = 1 if r < 0.35 else 2 if r < 0.65 else 3 if r < 0.85 else 4 if r < 0.95 else 5
        if dup_kind is not None:
            n_visits = min(n_visits, 2)
        birth = person["birth"]
        visits = [last]
        for _ in range(n_visits - 1):
            gap = (150 + int(rand() * 70)) if dental else (90 + int(rand() * 300))
            if visits[-1] - gap <= birth + 30:
                break
            visits.append(visits[-1] - gap)
        visits.reverse()
        n_visits = len(visits)
        first_visit = visits[0]

        # Clinical profile.
        diabetic = hypertensive = palliative = perio = False
        conditions: list[tuple[str, str]] = []
        if age >= 18:
            older = age >= 40
            p_i10 = (0.30 if age < 65 else 0.50) if older else 0.05
            p_e11 = (0.12 if age < 65 else 0.20) if older else 0.02
            if dental:
                p_i10, p_e11 = p_i10 / 3, p_e11 / 3
            if rand() < p_i10:
                hypertensive = True
                conditions.append(("I10", "Essential (primary) hypertension"))
            if rand() < p_e11:
                diabetic = True
                conditions.append(("E11.9", "Type 2 diabetes mellitus without complications"))
            if not dental and rand() < (0.25 if older else 0.03):
                conditions.append(("E78.5", "Hyperlipidemia, unspecified"))
            if not dental and age >= 65 and rand() < 0.02:
                palliative = True
                conditions.append(("Z51.5", "Encounter for palliative care"))
            if not dental and rand() < 0.02:
                conditions.append(("Z91.89", "Other specified personal risk factors, not elsewhere classified"))
            if dental and rand() < 0.12:
                perio = True
                conditions.append(("K05.6", "Periodontal disease, unspecified"))
        if rand() < 0.06 and not dental and age >= 5:
            conditions.append(("J45.909", "Unspecified asthma, uncomplicated"))
        if dental and rand() < 0.12:
            conditions.append(("K02.9", "Dental caries, unspecified"))

        # Deceased (only on the person's own record; a second registration is rarely updated).
        deceased_on = None
        if dup_kind is None:
            p_dead = 0.03 if age >= 65 else 0.006 if age >= 40 else 0.001
            if palliative:
                p_dead = 0.3
            if rand() < p_dead:
                deceased_on = last + 1 + int(rand() * (as_of - last - 1)) if as_of - last > 1 else as_of

        # Visits: appointment + encounter (+ procedures, observations).
        encounter_ids = []
        visit_ts = []
        appt_no = 0
        for j, day in enumerate(visits):
            stamp = self.ts(day)
            provider = self.pick(providers)[0]
            is_last = j == n_visits - 1
            if rand() < 0.06:  # an earlier cancellation, rebooked by this visit
                appt_no += 1
                cday = day - 1 - int(rand() * 20)
                cancelled = rand() < 0.6
                rows[E_APPT].append(
                    (
                        f"A{pid}-{appt_no}",
                        pid,
                        "cancelled" if cancelled else "no_show",
                        self.ts(cday),
                        "Hygiene" if dental else "Office Visit",
                        provider,
                        location_id,
                        self.ts(cday - 5 - int(rand() * 40)),
                        self.ts(cday - int(rand() * 3)) if cancelled else "",
                    )
                )
            if dental:
                if j == 0:
                    code, system, klass, desc, appt_type = (
                        "D0150",
                        "CDT",
                        "dental",
                        "Comprehensive oral evaluation",
                        "New Patient Exam",
                    )
                else:
                    code, system, klass, desc, appt_type = (
                        "D0120",
                        "CDT",
                        "dental",
                        "Periodic oral evaluation",
                        "Perio Maintenance" if perio else "Recall Hygiene",
                    )
            else:
                code, system, klass, desc, appt_type = self.medical_visit(age, j, rand() < 0.35)
            appt_no += 1
            scheduled = stamp
            if not is_last and (self.force_bad_appt[loc_index] or rand() < 0.002):
                self.force_bad_appt[loc_index] = False
                scheduled = self.pick(_BAD_DATES)
                dirt["invalid_appointment_dates"] += 1
                self.quarantined[loc_index][E_APPT] += 1
            rows[E_APPT].append(
                (
                    f"A{pid}-{appt_no}",
                    pid,
                    "completed",
                    scheduled,
                    appt_type,
                    provider,
                    location_id,
                    self.ts(day - 3 - int(rand() * 60)),
                    "",
                )
            )
            encounter_id = f"E{pid}-{j + 1}"
            enc_pid = pid
            if not is_last and (self.force_bad_enc[loc_index] or rand() < 0.002):
                self.force_bad_enc[loc_index] = False
                enc_pid = ""
                dirt["encounters_missing_patient_id"] += 1
                self.quarantined[loc_index][E_ENC] += 1
            rows[E_ENC].append((encounter_id, enc_pid, stamp, code, system, klass, desc, provider, location_id))
            encounter_ids.append(encounter_id)
            visit_ts.append(stamp)
            if dental:
                rows[E_PROC].append((pid, code, system, stamp, encounter_id, desc))
                if age < 14:
                    clean = ("D1120", "Prophylaxis, child")
                elif perio and j > 0:
                    clean = ("D4910", "Periodontal maintenance")
                else:
                    clean = ("D1110", "Prophylaxis, adult")
                rows[E_PROC].append((pid, clean[0], "CDT", stamp, encounter_id, clean[1]))

        if not dental:
            self.medical_results(pid, rows, age, sex, visits, visit_ts, encounter_ids, diabetic, hypertensive)

        # Problem list.
        for code, desc in conditions:
            if rand() < 0.5:
                onset, enc = first_visit, encounter_ids[0]
            else:
                onset, enc = max(birth + 1, first_visit - 1 - int(rand() * 1500)), ""
            resolved = ""
            if code in ("K02.9", "J45.909") and rand() < 0.3:
                resolved = self.d(min(as_of - 1, onset + 30 + int(rand() * 300)))
            rows[E_COND].append((pid, code, "ICD10CM", self.d(onset), resolved, enc, desc))

        # What happened after the last visit: a cancellation nobody rebooked, or a future booking.
        r = rand()
        provider = self.pick(providers)[0]
        appt_type = "Recall Hygiene" if dental else "Follow-up"
        if r < 0.06 and as_of - 1 - last > 60:
            appt_no += 1
            day = last + 60 + int(rand() * (as_of - 1 - last - 60))
            cancelled = rand() < 0.55
            rows[E_APPT].append(
                (
                    f"A{pid}-{appt_no}",
                    pid,
                    "cancelled" if cancelled else "no_show",
                    self.ts(day),
                    appt_type,
                    provider,
                    location_id,
                    self.ts(day - 7 - int(rand() * 60)),
                    self.ts(day - int(rand() * 4)) if cancelled else "",
                )
            )
            dirt["not_rebooked"] += 1
        elif deceased_on is None and rand() < (0.12 if as_of - last <= DORMANT_DAYS else 0.03) / 0.94:
            appt_no += 1
            day = as_of + 1 + int(rand() * 120)
            rows[E_APPT].append(
                (
                    f"A{pid}-{appt_no}",
                    pid,
                    "booked",
                    self.ts(day),
                    appt_type,
                    provider,
                    location_id,
                    self.ts(as_of - 1 - int(rand() * 60)),
                    "",
                )
            )
            dirt["future_appointments"] += 1

        # Recalls.
        recall_no = 0
        if dental and rand() < 0.85:
            recall_no += 1
            due = last + (91 if perio else 182)
            rows[E_RECALL].append((pid, "hygiene", self.d(due), f"R{pid}-{recall_no}"))
        elif not dental and (diabetic or hypertensive) and rand() < 0.7:
            recall_no += 1
            due = last + self.pick((91, 182, 365))
            rows[E_RECALL].append((pid, "follow_up", self.d(due), f"R{pid}-{recall_no}"))
        if deceased_on is None and rand() < 0.02:
            recall_no += 1
            rows[E_RECALL].append((pid, "not_now", self.d(as_of + 14 + int(rand() * 170)), f"R{pid}-{recall_no}"))
            dirt["not_now_recalls"] += 1

        # Referrals.
        if rand() < (0.06 if dental else 0.12):
            specialties = (
                ("Oral Surgery", "Periodontics", "Endodontics", "Orthodontics")
                if dental
                else ("Cardiology", "Endocrinology", "Gastroenterology", "Dermatology", "Orthopedics", "Ophthalmology")
            )
            ordered = self.pick(visits)
            r = rand()
            scheduled_date = completed_date = ""
            if r < 0.48:
                status = "ordered"
                dirt["open_referrals"] += 1
            elif r < 0.62:
                status = "scheduled"
                scheduled_date = self.d(ordered + 7 + int(rand() * 50))
            elif r < 0.93:
                status = "completed"
                done = min(as_of - 1, ordered + 14 + int(rand() * 60))
                scheduled_date, completed_date = self.d(done), self.d(done)
            else:
                status = "cancelled"
            rows[E_REF].append(
                (f"RF{pid}-1", pid, status, self.d(ordered), self.pick(specialties), scheduled_date, completed_date)
            )

        # Treatment plans (dental).
        if dental and age >= 12 and rand() < 0.2:
            n_plans = 1 if rand() < 0.8 else 2
            for plan_no, (code, desc) in enumerate(self.rng.sample(_PLAN_CODES, n_plans), start=1):
                presented = self.pick(visits)
                r = rand()
                completed_date = ""
                if r < 0.25:
                    status = "presented"
                elif r < 0.47:
                    status = "accepted"
                elif r < 0.85:
                    status = "completed"
                    done = min(as_of - 1, presented + 14 + int(rand() * 100))
                    completed_date = self.d(done)
                    rows[E_PROC].append((pid, code, "CDT", self.ts(done), "", desc))
                else:
                    status = "declined"
                if status in ("presented", "accepted"):
                    dirt["unscheduled_treatment_plans"] += 1
                rows[E_PLAN].append(
                    (f"TP{pid}-{plan_no}", pid, status, self.d(presented), code, "CDT", desc, completed_date)
                )

        # Contact preferences: at most one row per channel.
        span = max(1, as_of - first_visit)
        if person["phone"]:
            r = rand()
            if r < 0.078:
                rows[E_PREF].append((pid, "sms", "opt_out", self.d(first_visit + int(rand() * span)), "SMS reply STOP"))
                dirt["sms_opt_outs"] += 1
            elif r < 0.6:
                rows[E_PREF].append((pid, "sms", "opt_in", self.d(first_visit + int(rand() * span)), "intake form"))
            r = rand()
            if r < 0.02:
                rows[E_PREF].append((pid, "call", "opt_out", self.d(first_visit + int(rand() * span)), "front desk"))
                dirt["call_opt_outs"] += 1
            elif r < 0.1:
                rows[E_PREF].append((pid, "call", "opt_in", self.d(first_visit + int(rand() * span)), "front desk"))
        if person["email"]:
            r = rand()
            if r < 0.055:
                rows[E_PREF].append(
                    (pid, "email", "opt_out", self.d(first_visit + int(rand() * span)), "unsubscribe link")
                )
                dirt["email_opt_outs"] += 1
            elif r < 0.45:
                rows[E_PREF].append(
                    (pid, "email", "opt_in", self.d(first_visit + int(rand() * span)), "patient portal")
                )

        # Holds.
        if rand() < 0.015:
            start = first_visit + int(rand() * span)
            reason = self.pick(("Patient request", "Attorney request", "Billing dispute", "Asked not to be contacted"))
            rows[E_HOLD].append((pid, "do_not_contact", self.d(start), "", reason))
            dirt["do_not_contact_holds"] += 1
        if rand() < (0.6 if palliative else 0.01):
            start = first_visit + int(rand() * span)
            end = self.d(start + 30 + int(rand() * 150)) if rand() < 0.5 else ""
            reason = (
                "Hospice care"
                if palliative
                else self.pick(("Under active treatment elsewhere", "Post-surgical recovery", "Pregnancy"))
            )
            rows[E_HOLD].append((pid, "clinical_hold", self.d(start), end, reason))
            dirt["clinical_holds"] += 1

        return {"deceased_on": deceased_on}

    def medical_visit(self, age: int, j: int, wellness: bool) -> tuple[str, str, str, str, str]:
        """(code, system, encounter class, description, appointment type) of one medical visit."""
        if not wellness:
            if self.rand() < 0.7:
                return "99213", "CPT", "ambulatory", "Office visit, established patient, low complexity", "Office Visit"
            return "99214", "CPT", "ambulatory", "Office visit, established patient, moderate complexity", "Follow-up"
        if age >= 65 and self.rand() < 0.6:
            if j == 0:
                return "G0438", "HCPCS", "wellness", "Annual wellness visit, initial", "Medicare Wellness Visit"
            return "G0439", "HCPCS", "wellness", "Annual wellness visit, subsequent", "Medicare Wellness Visit"
        if age < 1:
            code, band = "99391", "infant"
        elif age < 5:
            code, band = "99392", "age 1-4"
        elif age < 12:
            code, band = "99393", "age 5-11"
        elif age < 18:
            code, band = "99394", "age 12-17"
        elif age < 40:
            code, band = "99395", "age 18-39"
        elif age < 65:
            code, band = "99396", "age 40-64"
        else:
            code, band = "99397", "age 65+"
        appt_type = "Well Child" if age < 18 else "Annual Physical"
        return code, "CPT", "wellness", f"Preventive visit, established patient, {band}", appt_type

    def medical_results(
        self,
        pid: str,
        rows: list[list[tuple]],
        age: int,
        sex: str,
        visits: list[int],
        visit_ts: list[str],
        encounter_ids: list[str],
        diabetic: bool,
        hypertensive: bool,
    ) -> None:
        """Vital signs, labs and screening procedures for a medical record."""
        rand = self.rand
        n = len(visits)
        if age >= 18:
            for j in range(n - 1, max(-1, n - 1 - (2 if hypertensive else 1)), -1):
                systolic = 118 + (18 if hypertensive else 0) + rand() * 24 - 12 + (rand() * 24 - 12)
                systolic = int(min(200, max(90, systolic)))
                rows[E_OBS].append((pid, "8480-6", "LOINC", visit_ts[j], str(systolic), "", "mm[Hg]", encounter_ids[j]))
        a1c_visits = []
        if diabetic:
            a1c_visits = [j for j, p in ((n - 1, 0.9), (n - 2, 0.7)) if j >= 0 and rand() < p]
        elif age >= 35 and rand() < 0.05:
            a1c_visits = [n - 1]
        for j in a1c_visits:
            if diabetic:
                value = 7.4 + (rand() + rand() + rand() - 1.5) * 2.6
                value = min(13.5, max(5.6, value))
            else:
                value = 4.8 + rand() * 1.6
            text = f"{value:.1f}"
            rows[E_OBS].append((pid, "4548-4", "LOINC", visit_ts[j], text, "", "%", encounter_ids[j]))
            rows[E_PROC].append(
                (pid, "83036", "CPT", visit_ts[j], encounter_ids[j], "Hemoglobin A1c (glycosylated) test")
            )
            if diabetic and float(text) < 7.0:
                rows[E_PROC].append(
                    (pid, "3044F", "CPT", visit_ts[j], encounter_ids[j], "Most recent HbA1c level less than 7.0%")
                )
        screenings = []
        if sex == "F" and 40 <= age <= 74 and rand() < 0.35:
            screenings.append(("77067", "Screening mammography, bilateral"))
        if sex == "F" and 21 <= age <= 65 and rand() < 0.25:
            screenings.append(("88142", "Cytopathology, cervical or vaginal, thin layer"))
        if 45 <= age <= 75 and rand() < 0.08:
            screenings.append(("45378", "Colonoscopy, diagnostic"))
        if diabetic and rand() < 0.4:
            screenings.append(("92250", "Fundus photography (diabetic eye exam)"))
        for code, desc in screenings:
            j = int(rand() * n)
            rows[E_PROC].append((pid, code, "CPT", visit_ts[j], encounter_ids[j], desc))


def _ascii_last(last: str) -> str:
    """ASCII form of a surname (cached for the list's names)."""
    cached = _LAST_ASCII.get(last)
    return cached if cached is not None else _ascii(last)


_PLAN_CODES: tuple[tuple[str, str], ...] = (
    ("D2740", "Crown, porcelain/ceramic"),
    ("D4341", "Periodontal scaling and root planing, four or more teeth per quadrant"),
    ("D2391", "Resin-based composite, one surface, posterior"),
    ("D2950", "Core buildup, including any pins"),
    ("D7140", "Extraction, erupted tooth or exposed root"),
    ("D6010", "Surgical placement of implant body, endosteal implant"),
)


def _run_chunk(args: tuple[_Plan, int]) -> ChunkResult:
    """Worker entry point: generate chunk ``index`` of ``plan``."""
    plan, index = args
    first = index * CHUNK_PERSONS
    count = min(CHUNK_PERSONS, plan.persons - first)
    return _ChunkBuilder(plan, index).run(first, count)


# -- driver -----------------------------------------------------------------------------------


class GenerateError(ValueError):
    """Bad arguments or an output folder that is not safe to write into."""


def _check_columns() -> None:
    for name, columns in GENERATED_COLUMNS.items():
        if tuple(ENTITIES[name].column_names) != columns:
            raise RuntimeError(f"the extract contract for {name} changed; update reactivation.generate")
    if set(GENERATED_COLUMNS) != set(ENTITIES):
        raise RuntimeError("the extract contract's entities changed; update reactivation.generate")


def _chunk_results(plan: _Plan, workers: int) -> Iterator[ChunkResult]:
    """Chunk results in chunk order, from worker processes when there is more than one chunk."""
    n_chunks = math.ceil(plan.persons / CHUNK_PERSONS)
    tasks = [(plan, i) for i in range(n_chunks)]
    if workers <= 1 or n_chunks <= 1:
        for task in tasks:
            yield _run_chunk(task)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(min(workers, n_chunks)) as pool:
        yield from pool.imap(_run_chunk, tasks)


def generate_extract(
    out: Path,
    *,
    patients: int,
    locations: int,
    seed: int,
    as_of: date = DEFAULT_AS_OF,
    workers: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic multi-location extract under ``out`` and return the expected counts.

    The return value is ``expected.json`` without the ``truth`` list (the number of groups is in
    ``truth_groups``). Output is byte-identical for the same (patients, locations, seed, as_of).
    """
    if not 1 <= patients <= MAX_PERSONS:
        raise GenerateError(f"--patients must be between 1 and {MAX_PERSONS:,}")
    if not 1 <= locations <= MAX_LOCATIONS:
        raise GenerateError(f"--locations must be between 1 and {MAX_LOCATIONS}")
    _check_columns()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenerateError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GenerateError(f"{out} is not empty; choose a new folder (or --force to overwrite the generated files)")
    specs = tuple(build_locations(locations))
    plan = _Plan(seed=seed, as_of=as_of, persons=patients, locations=specs)
    if workers is None:
        workers = os.cpu_count() or 1

    paths: list[list[Path]] = []
    for spec in specs:
        folder = out / spec.location_id
        folder.mkdir(parents=True, exist_ok=True)
        loc_paths = []
        for name in ENTITY_NAMES:
            path = folder / f"{name}.csv"
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(ENTITIES[name].column_names)
                if name == "locations":
                    writer.writerow(
                        (
                            spec.location_id,
                            spec.name,
                            spec.timezone,
                            spec.phone,
                            spec.address_line,
                            spec.city,
                            spec.state,
                            f"{spec.zip3}01",
                            spec.booking_url,
                        )
                    )
                elif name == "providers":
                    writer.writerows(
                        (pid, pname, specialty, spec.location_id) for pid, pname, specialty in spec.providers
                    )
            loc_paths.append(path)
        paths.append(loc_paths)
    truth_path = out / "truth" / "duplicates.csv"
    truth_path.parent.mkdir(parents=True, exist_ok=True)

    k = len(specs)
    rows = [[0] * len(ENTITY_NAMES) for _ in range(k)]
    for i, spec in enumerate(specs):
        rows[i][E_LOC] = 1
        rows[i][E_PROV] = len(spec.providers)
    quarantined = [[0] * len(ENTITY_NAMES) for _ in range(k)]
    dirt = [Counter(dict.fromkeys(DIRT_KEYS, 0)) for _ in range(k)]
    groups = 0
    with truth_path.open("w", encoding="utf-8", newline="") as truth_handle:
        truth_writer = csv.writer(truth_handle, lineterminator="\n")
        truth_writer.writerow(("person_key", "location_id", "patient_id"))
        for result in _chunk_results(plan, workers):
            for i in range(k):
                for e in range(len(ENTITY_NAMES)):
                    text = result.texts[i][e]
                    if text:
                        with paths[i][e].open("a", encoding="utf-8", newline="") as handle:
                            handle.write(text)
                    rows[i][e] += result.rows[i][e]
                    quarantined[i][e] += result.quarantined[i][e]
                dirt[i].update(result.dirt[i])
            truth_writer.writerows(result.truth)
            groups += len({row[0] for row in result.truth})

    def block(r: list[int], q: list[int], d: Counter) -> dict:
        return {
            "rows": dict(zip(ENTITY_NAMES, r, strict=True)),
            "quarantined": dict(zip(ENTITY_NAMES, q, strict=True)),
            "dirt": {key: d[key] for key in DIRT_KEYS},
        }

    total_rows = [sum(rows[i][e] for i in range(k)) for e in range(len(ENTITY_NAMES))]
    total_quarantined = [sum(quarantined[i][e] for i in range(k)) for e in range(len(ENTITY_NAMES))]
    total_dirt: Counter = Counter()
    for d in dirt:
        total_dirt.update(d)
    expected = {
        "generator": "reactivation.generate",
        "format_version": 1,
        "seed": seed,
        "as_of": as_of.isoformat(),
        "persons": patients,
        "locations": [
            {"location_id": s.location_id, "name": s.name, "kind": s.kind, "timezone": s.timezone} for s in specs
        ],
        "totals": block(total_rows, total_quarantined, total_dirt),
        "per_location": {specs[i].location_id: block(rows[i], quarantined[i], dirt[i]) for i in range(k)},
        "truth_file": "truth/duplicates.csv",
        "truth_groups": groups,
    }
    _write_expected(out / "expected.json", expected, truth_path)
    return expected


def _write_expected(path: Path, expected: dict, truth_path: Path) -> None:
    """Write expected.json with ``truth`` streamed from the truth CSV (memory stays flat at any scale)."""
    head = json.dumps({**expected, "truth": "__TRUTH__"}, indent=2, ensure_ascii=False)
    before, after = head.split('"__TRUTH__"')
    with path.open("w", encoding="utf-8", newline="\n") as out, truth_path.open(encoding="utf-8", newline="") as src:
        out.write(before)
        out.write("[")
        reader = csv.reader(src)
        next(reader)
        separator = "\n    "
        group_key: str | None = None
        records: list[dict[str, str]] = []

        def flush() -> None:
            nonlocal separator
            if group_key is None:
                return
            out.write(separator + json.dumps({"person_key": group_key, "records": records}))
            separator = ",\n    "

        for person_key, location_id, patient_id in reader:
            if person_key != group_key:
                flush()
                group_key, records = person_key, []
            records.append({"location_id": location_id, "patient_id": patient_id})
        flush()
        out.write("\n  ]" + after + "\n")


# -- command line -----------------------------------------------------------------------------


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from None


def _cmd_generate(args: argparse.Namespace) -> int:
    from reactivation.cli import UsageError

    started = time.monotonic()
    try:
        expected = generate_extract(
            args.out,
            patients=args.patients,
            locations=args.locations,
            seed=args.seed,
            as_of=args.as_of,
            workers=args.workers,
            overwrite=args.force,
        )
    except GenerateError as err:
        raise UsageError(str(err)) from None
    totals = expected["totals"]
    rows = sum(totals["rows"].values())
    quarantined = sum(totals["quarantined"].values())
    print(
        f"generated {expected['persons']} persons, {totals['rows']['patients']} patient records, {rows} rows "
        f"({quarantined} to quarantine, {expected['truth_groups']} duplicate groups) at {len(expected['locations'])} "
        f"locations in {time.monotonic() - started:.1f}s: {args.out}"
    )
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``reactivation generate`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "generate",
        help="write a seeded synthetic multi-location extract (native CSV) with known dirt and ground truth",
        description="Write a seeded synthetic multi-location extract (native CSV layout, one folder per location) "
        "with deliberate dirt in known numbers, OUT/expected.json and OUT/truth/duplicates.csv.",
    )
    parser.add_argument("--patients", type=int, default=1000, help="number of people (default 1000)")
    parser.add_argument("--locations", type=int, default=3, help=f"number of locations, 1-{MAX_LOCATIONS} (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives identical files")
    parser.add_argument(
        "--as-of",
        type=_date,
        default=DEFAULT_AS_OF,
        help=f"the date the history is generated relative to (default {DEFAULT_AS_OF.isoformat()})",
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder, replacing its files")
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder")
    parser.set_defaults(func=_cmd_generate)

"""Render the extract contract as the one-page document in docs/extract-contract.md.

The page is generated so it cannot drift from the code: a test compares the
committed file with this rendering (regenerate with ``reactivation contract``).
"""

from __future__ import annotations

from reactivation.ingest.contract import ENTITIES

HEADER = """# The extract contract

What every EMR extract must provide, whatever its source. Each adapter (native
CSV, FHIR R4 Bulk NDJSON, Synthea CSV, or a declarative YAML mapping) maps its
files onto these entities; the loader checks them and writes them to the
warehouse's `raw` schema, one table per entity.

## Native CSV layout

One file per entity, named after it (`patients.csv`, or `patients_2026-11-22.csv`
— a date in the name is the extract date), UTF-8 (a BOM is fine; other encodings
are read with a recorded warning), comma-separated with a header row of the
column names below, `"`-quoted fields (quoted newlines are fine), LF or CRLF.

- **Keys**: every entity is keyed by (source system, location, its key columns).
  The loader adds the source system and the location from the load
  (`reactivation load --location LOC`), so files need not carry them.
- **Required** columns must be present in the header (otherwise the file is
  rejected and the message names them) and non-empty in every row (otherwise the
  row is quarantined with its line, column and reason).
- **Types**: `date` accepts ISO dates (`2026-11-22`) and common formats
  (`11/22/2026`, `20261122`, `22-Nov-2026`, ...); `timestamp` accepts ISO 8601
  (with or without offset; without one the source's time zone applies) and
  `11/22/2026 14:30`; `boolean` accepts true/false, yes/no, y/n, 1/0; `code`
  columns are matched case-insensitively against their allowed values, with
  spaces and hyphens read as underscores (`No-Show` → `no_show`).
- **Extra columns** are kept, as JSON in the row's `extra` column.
- **Exact duplicate rows** in one file are quarantined as duplicates of the first.
- **Re-delivery**: the same file (same sha256) for the same source, location and
  entity is skipped. A corrected file with the same name and extract date
  supersedes the earlier one; a file's rows become visible all at once or not at all.
- **Derived on load**: patients' phones in E.164 with a validity flag
  (`phone_e164`, `phone_is_valid`), emails checked for syntax
  (`email_normalised`, `email_is_valid`); locations' phones in E.164.

Every load is recorded in `raw.load_manifest` (source, location, file name,
size, sha256, extract date, rows read, loaded and quarantined — read always
equals loaded plus quarantined — times, status and message); bad rows are in
`raw.quarantine`.
"""


def render_contract_markdown() -> str:
    parts = [HEADER]
    for entity in ENTITIES.values():
        parts.append(f"\n## `{entity.name}`\n\n{entity.description}\n\nKey: ({', '.join(entity.key)}).\n")
        parts.append("\n| column | type | required | allowed values | notes |\n|---|---|---|---|---|\n")
        for column in entity.columns:
            allowed = ", ".join(f"`{v}`" for v in column.allowed)
            parts.append(
                f"| `{column.name}` | {column.type} | {'yes' if column.required else ''} | {allowed} "
                f"| {column.description} |\n"
            )
        if entity.derived:
            derived = ", ".join(f"`{c.name}`" for c in entity.derived)
            parts.append(f"\nDerived by the loader (not read from files): {derived}.\n")
    return "".join(parts)

"""Declarative source mappings: how a foreign tabular export maps onto the extract contract.

A mapping is a YAML file (see ``docs/source-mappings.md`` and
``config/mappings/example_practice_export.yml``): file patterns to entities,
column renames, value maps for statuses and codes, date formats, defaults and
constants. The native CSV layout and the Synthea layout are themselves mappings,
so every tabular source goes through the same loader.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reactivation.ingest.contract import ENTITIES
from reactivation.ingest.normalise import DEFAULT_DATE_FORMATS, DEFAULT_TIMESTAMP_FORMATS

TOP_LEVEL_KEYS = frozenset(
    {"name", "source_system", "location", "timezone", "phone_region", "encoding", "delimiter", "date_formats",
     "timestamp_formats", "files", "ignore"}
)  # fmt: skip
FILE_KEYS = frozenset(
    {"pattern", "entity", "columns", "defaults", "drop", "delimiter", "date_formats", "timestamp_formats"}
)
TRANSFORMS = ("present", "upper", "lower", "digits", "state_timezone", "numeric_or_empty", "text_if_not_numeric")


class MappingError(ValueError):
    """A mapping file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class ColumnRule:
    """Where one contract column's value comes from."""

    target: str
    source: str | None = None
    constant: str | None = None
    default: str | None = None
    values: dict[str, str] | None = None
    transform: str | None = None


@dataclass(frozen=True)
class FileMapping:
    pattern: str
    entity: str
    rules: dict[str, ColumnRule]
    drop: frozenset[str] = frozenset()
    delimiter: str = ","
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    timestamp_formats: tuple[str, ...] = DEFAULT_TIMESTAMP_FORMATS

    def matches(self, file_name: str) -> bool:
        return fnmatch.fnmatch(file_name.lower(), self.pattern.lower())


@dataclass(frozen=True)
class SourceMapping:
    name: str
    source_system: str
    files: tuple[FileMapping, ...]
    location: str | None = None
    # Time zone for timestamps without an offset. None: the single location's
    # zone when the extract's locations file names exactly one, else UTC.
    timezone: str | None = None
    phone_region: str = "US"
    encoding: str | None = None
    ignore: tuple[str, ...] = field(default=())

    def mapping_for(self, file_name: str) -> FileMapping | None:
        for file_mapping in self.files:
            if file_mapping.matches(file_name):
                return file_mapping
        return None

    def is_ignored(self, file_name: str) -> bool:
        return any(fnmatch.fnmatch(file_name.lower(), p.lower()) for p in self.ignore)


def _rule(where: str, target: str, spec) -> ColumnRule:
    if isinstance(spec, str):
        return ColumnRule(target=target, source=spec)
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: column {target!r} must be a source column name or a mapping")
    unknown = set(spec) - {"from", "constant", "default", "values", "transform"}
    if unknown:
        raise MappingError(f"{where}: column {target!r} has unknown keys {sorted(unknown)}")
    if "from" not in spec and "constant" not in spec and "default" not in spec:
        raise MappingError(f"{where}: column {target!r} needs 'from', 'constant' or 'default'")
    transform = spec.get("transform")
    if transform is not None and transform not in TRANSFORMS:
        raise MappingError(f"{where}: column {target!r} has unknown transform {transform!r}; use one of {TRANSFORMS}")
    values = spec.get("values")
    if values is not None and not isinstance(values, dict):
        raise MappingError(f"{where}: column {target!r}: 'values' must map source values to contract values")
    for key in values or {}:
        if not isinstance(key, str):
            raise MappingError(
                f"{where}: column {target!r}: value-map key {key!r} was read by YAML as a {type(key).__name__}; "
                f'quote it (e.g. "{key}": ...) so it matches the text in the file'
            )
    return ColumnRule(
        target=target,
        source=spec.get("from"),
        constant=None if spec.get("constant") is None else str(spec["constant"]),
        default=None if spec.get("default") is None else str(spec["default"]),
        values={str(k): ("" if v is None else str(v)) for k, v in values.items()} if values else None,
        transform=transform,
    )


def parse_mapping(data: dict, where: str) -> SourceMapping:
    if not isinstance(data, dict):
        raise MappingError(f"{where}: expected a mapping at the top level")
    for key in ("name", "files"):
        if key not in data:
            raise MappingError(f"{where}: missing required key {key!r}")
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    date_formats = tuple(data.get("date_formats") or ()) + DEFAULT_DATE_FORMATS
    timestamp_formats = tuple(data.get("timestamp_formats") or ()) + DEFAULT_TIMESTAMP_FORMATS
    files = []
    for i, item in enumerate(data["files"]):
        item_where = f"{where}: files[{i}]"
        if not isinstance(item, dict) or "pattern" not in item or "entity" not in item:
            raise MappingError(f"{item_where}: each file needs 'pattern' and 'entity'")
        unknown_file_keys = set(item) - FILE_KEYS
        if unknown_file_keys:
            raise MappingError(
                f"{item_where}: unknown key(s) {sorted(unknown_file_keys)}; allowed: {sorted(FILE_KEYS)}"
            )
        entity = item["entity"]
        if entity not in ENTITIES:
            raise MappingError(f"{item_where}: unknown entity {entity!r}; the contract has {sorted(ENTITIES)}")
        contract_columns = set(ENTITIES[entity].column_names)
        rules: dict[str, ColumnRule] = {}
        for target, spec in (item.get("columns") or {}).items():
            if target not in contract_columns:
                raise MappingError(f"{item_where}: {target!r} is not a column of {entity} ({sorted(contract_columns)})")
            rules[target] = _rule(item_where, target, spec)
        for target, value in (item.get("defaults") or {}).items():
            if target not in contract_columns:
                raise MappingError(f"{item_where}: default for unknown column {target!r} of {entity}")
            existing = rules.get(target)
            if existing is None:
                rules[target] = ColumnRule(target=target, source=target, default=str(value))
            else:
                rules[target] = ColumnRule(
                    target=target,
                    source=existing.source,
                    constant=existing.constant,
                    default=str(value),
                    values=existing.values,
                    transform=existing.transform,
                )
        files.append(
            FileMapping(
                pattern=str(item["pattern"]),
                entity=entity,
                rules=rules,
                drop=frozenset(item.get("drop") or ()),
                delimiter=str(item.get("delimiter") or data.get("delimiter") or ","),
                date_formats=tuple(item.get("date_formats") or ()) + date_formats,
                timestamp_formats=tuple(item.get("timestamp_formats") or ()) + timestamp_formats,
            )
        )
    return SourceMapping(
        name=str(data["name"]),
        source_system=str(data.get("source_system") or data["name"]),
        files=tuple(files),
        location=data.get("location"),
        timezone=str(data["timezone"]) if data.get("timezone") else None,
        phone_region=str(data.get("phone_region") or "US"),
        encoding=data.get("encoding"),
        ignore=tuple(data.get("ignore") or ()),
    )


def load_mapping(path: Path) -> SourceMapping:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"mapping file not found: {path}") from None
    except yaml.YAMLError as err:
        raise MappingError(f"{path}: not valid YAML ({err})") from None
    return parse_mapping(data, str(path))


def native_mapping(source_system: str = "native_csv") -> SourceMapping:
    """The native CSV layout: one file per entity, named after it, columns named as in the contract."""
    files = tuple(
        FileMapping(
            pattern=f"{name}*.csv",
            entity=name,
            rules={c: ColumnRule(target=c, source=c) for c in entity.column_names},
        )
        for name, entity in ENTITIES.items()
    )
    return SourceMapping(name="native", source_system=source_system, files=files)


def synthea_mapping() -> SourceMapping:
    return load_mapping(Path(__file__).with_name("synthea.yml"))

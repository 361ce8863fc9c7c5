"""The sources file: which extract folders the nightly run loads, and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from reactivation.ingest.mapping import MappingError
from reactivation.ingest.pipeline import FORMATS


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    format: str | None
    mapping: Path | None
    location: str | None


def read_sources(path: Path) -> list[Source]:
    """Parse the sources file; paths inside it are relative to the file itself."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise MappingError(f"sources file not found: {path} (set REACTIVATION_SOURCES)") from None
    except yaml.YAMLError as err:
        raise MappingError(f"{path}: not valid YAML ({err})") from None
    entries = data.get("sources")
    if not isinstance(entries, list) or not entries:
        raise MappingError(f"{path}: expected a non-empty 'sources' list")
    sources = []
    for i, entry in enumerate(entries):
        where = f"{path}: sources[{i}]"
        if not isinstance(entry, dict) or "path" not in entry:
            raise MappingError(f"{where}: each source needs a 'path'")
        fmt, mapping = entry.get("format"), entry.get("mapping")
        if bool(fmt) == bool(mapping):
            raise MappingError(f"{where}: give exactly one of 'format' ({', '.join(FORMATS)}) or 'mapping'")
        if fmt and fmt not in FORMATS:
            raise MappingError(f"{where}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        sources.append(
            Source(
                name=str(entry.get("name") or f"source_{i}"),
                path=(path.parent / entry["path"]).resolve(),
                format=fmt,
                mapping=(path.parent / mapping).resolve() if mapping else None,
                location=entry.get("location"),
            )
        )
    return sources

"""The manifest every training set carries (`manifest.json`): written and checked the same way for each set."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"


def write_manifest(manifest: Any, folder: Path) -> None:
    """A manifest dataclass as `folder/manifest.json`."""
    (Path(folder) / MANIFEST_FILE).write_text(json.dumps(asdict(manifest), indent=1, sort_keys=True))


def read_manifest(folder: Path, name: str, version: int, error: type[ValueError]) -> dict[str, Any]:
    """The fields of `folder`'s manifest of an `astra dataset NAME` set; `error` unless it is one of `version`."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise error(f"{folder} is not a {name} training set: it has no {MANIFEST_FILE}")
    fields = json.loads(path.read_text())
    if fields.get("version") != version:
        raise error(
            f"{folder} holds a {name} training set of version {fields.get('version')}, this code reads {version}: "
            f"build it again with `astra dataset {name}`"
        )
    return fields

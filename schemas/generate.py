"""Write the JSON Schema files of the JSON record formats from their msgspec Structs.

``python -m schemas.generate`` rewrites ``schemas/<name>.schema.json`` for every format in
:data:`schemas.records.JSON_RECORDS`; ``--check`` only reports stale files (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas.records import JSON_RECORDS

HERE = Path(__file__).parent
BASE_ID = "https://webhookmaster.dev/schemas/"


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema document of the record format ``name`` (draft 2020-12)."""
    struct = JSON_RECORDS[name]
    generated = msgspec.json.schema(struct)
    defs = generated.get("$defs", {})
    root = defs.pop(struct.__name__)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{BASE_ID}{name}.schema.json",
        **root,
    }
    if defs:
        document["$defs"] = defs
    tidy: dict[str, Any] = _tidy(document)
    return tidy


def _tidy(node: Any) -> Any:
    """Descriptions taken from docstrings on one line each."""
    if isinstance(node, dict):
        return {
            key: " ".join(value.split())
            if key == "description" and isinstance(value, str)
            else _tidy(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    return node


def text(name: str) -> str:
    """The file text of :func:`schema` (as committed)."""
    return json.dumps(schema(name), indent=2) + "\n"


def path(name: str) -> Path:
    return HERE / f"{name}.schema.json"


def stale() -> list[str]:
    """Names whose committed schema file differs from the generated one."""
    return [
        name
        for name in JSON_RECORDS
        if not path(name).exists() or path(name).read_text() != text(name)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {path(name)} (run python -m schemas.generate)", file=sys.stderr)
        return 1 if names else 0
    for name in JSON_RECORDS:
        path(name).write_text(text(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parses Bicep files with pycep-parser and prints {path: parsed | {"error": text}} as JSON.

Runs in the infra venv (.georollout/infra-venv), where pycep-parser is pinned to the version
checkov uses, so the tests judge the templates with the very parser checkov scans them with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pycep import BicepParser


def parse_files(paths: list[str]) -> dict[str, Any]:
    """Parse every path; a file pycep cannot parse maps to {"error": <reason>}."""
    parser = BicepParser()
    parsed: dict[str, Any] = {}
    for path in paths:
        try:
            parsed[path] = parser.parse(file_path=Path(path))
        except Exception as error:  # pycep raises lark's many exception types; report them all
            parsed[path] = {"error": f"{type(error).__name__}: {error}"}
    return parsed


if __name__ == "__main__":
    json.dump(parse_files(sys.argv[1:]), sys.stdout, default=str)

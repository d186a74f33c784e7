"""Committed build artifacts (`contracts/build/*.json`): ABIs and bytecode, loaded once."""

import json
from functools import cache
from pathlib import Path
from typing import Any

from backend.settings import PROJECT_ROOT

BUILD_DIR = PROJECT_ROOT / "contracts" / "build"


@cache
def artifact(name: str, build_dir: Path = BUILD_DIR) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((build_dir / f"{name}.json").read_text())
    return data


def abi(name: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = artifact(name)["abi"]
    return result

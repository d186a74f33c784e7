"""Builds `contracts/build/*.json` with the pinned npm `solc` (solcjs) through its standard-JSON
interface. Output is deterministic, so a rebuild of unchanged sources is byte-identical and
`check()` can compare a fresh build with the committed artifacts."""

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.kit.errors import ConfigError
from backend.settings import CompilerConfig


@dataclass(frozen=True)
class Artifact:
    name: str
    text: str  # the JSON file's exact content


def _solcjs(contracts_dir: Path) -> list[str]:
    script = contracts_dir / "node_modules" / "solc" / "solc.js"
    node = shutil.which("node")
    if node is None or not script.exists():
        raise ConfigError(
            "the Solidity compiler needs Node.js and `npm ci` in contracts/", code="solc_missing"
        )
    return [node, str(script), "--standard-json", "--base-path", ".", "--include-path", "node_modules"]


def _standard_input(config: CompilerConfig) -> dict[str, Any]:
    return {
        "language": "Solidity",
        "settings": {
            "evmVersion": config.evm_version,
            "optimizer": {"enabled": config.optimizer, "runs": config.optimizer_runs},
            "metadata": {"bytecodeHash": "none", "appendCBOR": False},
            "outputSelection": {
                "*": {"*": ["abi", "metadata", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }


def _compile(config: CompilerConfig, contracts_dir: Path) -> dict[str, Any]:
    version = subprocess.run(
        [*_solcjs(contracts_dir)[:2], "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not version.startswith(config.solc + "+"):
        raise ConfigError(f"contracts/node_modules has solc {version}, the config pins {config.solc}")
    request = _standard_input(config)
    # Given by URL, the sources and their imports are read by solcjs from contracts/ and node_modules/.
    request["sources"] = {unit: {"urls": [unit]} for unit in config.sources}
    # solcjs exits before a piped stdout drains; a file receives the whole document.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            _solcjs(contracts_dir),
            input=json.dumps(request),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            cwd=contracts_dir,
        )
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise ConfigError(f"solc failed: {proc.stderr.strip()}", code="solc_failed")
    # solcjs may print a notice before the JSON document.
    output: dict[str, Any] = json.loads(text[text.index("{") :])
    errors = [e for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise ConfigError("solc: " + "\n".join(e["formattedMessage"] for e in errors), code="solc_failed")
    output["version"] = version
    return output


def build(config: CompilerConfig, contracts_dir: Path) -> list[Artifact]:
    output = _compile(config, contracts_dir)
    artifacts = []
    for unit, contracts in sorted(output["contracts"].items()):
        if not unit.startswith(("src/", "test/")):  # test/: contracts the tests deploy, never the platform
            continue
        for name, compiled in sorted(contracts.items()):
            if not compiled["evm"]["bytecode"]["object"]:
                continue  # abstract: its ABI is part of the contracts built on it
            body = {
                "contractName": name,
                "sourceName": unit,
                "compiler": {"version": output["version"], **_standard_input(config)["settings"]},
                "sourceHash": _source_hash(json.loads(compiled["metadata"])["sources"]),
                "abi": compiled["abi"],
                "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            }
            del body["compiler"]["outputSelection"]
            artifacts.append(Artifact(name, json.dumps(body, indent=2, sort_keys=True) + "\n"))
    return artifacts


def _source_hash(sources: dict[str, dict[str, Any]]) -> str:
    """One hash over every source this contract was compiled from (solc's per-file keccak256)."""
    digest = hashlib.sha256()
    for unit in sorted(sources):
        digest.update(f"{unit}\0{sources[unit]['keccak256']}\n".encode())
    return "0x" + digest.hexdigest()


def write(artifacts: list[Artifact], build_dir: Path) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts:
        (build_dir / f"{artifact.name}.json").write_text(artifact.text)


def stale(artifacts: list[Artifact], build_dir: Path) -> list[str]:
    """Names of contracts whose committed artifact differs from a fresh build (or is missing)."""
    names = []
    for artifact in artifacts:
        path = build_dir / f"{artifact.name}.json"
        if not path.exists() or path.read_text() != artifact.text:
            names.append(artifact.name)
    expected = {f"{a.name}.json" for a in artifacts}
    names += sorted(p.stem for p in build_dir.glob("*.json") if p.name not in expected)
    return names

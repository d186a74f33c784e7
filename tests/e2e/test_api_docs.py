"""docs/api.md as a reader runs it: every block, in order, against a fresh `pers up --demo`; and every
route of the API has its `### METHOD /path` section (a route added without one fails here)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from backend.settings import PROJECT_ROOT
from tests.conftest import missing
from tests.e2e.test_cli import Up

DOC = PROJECT_ROOT / "docs" / "api.md"
BLOCK = re.compile(r"^```(\w+)[ \t]*(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
ROUTE = re.compile(r"^### (GET|POST|PUT|PATCH|DELETE) (/\S*)$", re.MULTILINE)
EOF_MARK = "PERS_API_DOC"


def doc_as_script(text: str) -> str:
    """`sh` blocks run as they are; a `python NAME` block is saved as NAME (the reader saves it, a later
    block runs it); a bare `python` block runs as it is."""
    parts = ["set -euo pipefail"]
    for language, name, body in BLOCK.findall(text):
        if language == "sh":
            parts.append(body)
        elif language == "python" and name:
            parts.append(f"cat > {name} <<'{EOF_MARK}'\n{body}{EOF_MARK}")
        elif language == "python":
            parts.append(f"python - <<'{EOF_MARK}'\n{body}{EOF_MARK}")
    return "\n".join(parts) + "\n"


def test_every_block_of_the_api_guide_runs_against_pers_up_demo(tmp_path: Path) -> None:
    if not all(shutil.which(tool) for tool in ("bash", "curl", "jq")):
        missing("docs/api.md runs with bash, curl and jq")
    script = doc_as_script(DOC.read_text())
    assert script.count("curl ") >= 30 and "python siwe.py" in script
    # The guide runs here at machine speed, not a reader's: one address's budget per minute (120 by
    # default) is far below its few hundred requests.
    up = Up(tmp_path, PERS_RATE_LIMIT_PER_ADDRESS="100000", PERS_RATE_LIMIT_PER_KEY="100000")
    try:
        operator_token = re.search(r"operator token \(.*\): (op_\S+)", up.log.read_text())
        assert operator_token, up.log.read_text()
        work = tmp_path / "reader"
        work.mkdir()
        venv = Path(sys.executable).parent  # `python` is the README environment's
        env = {**os.environ, "API": up.base, "OP": operator_token.group(1)}
        env["PATH"] = f"{venv}{os.pathsep}{env['PATH']}"
        run = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
        assert "suspended: the key answers 403" in run.stdout and "revoked: the key answers 401" in run.stdout
        assert "received webhook.test" in run.stdout and "signature verified" in run.stdout
        assert "progress claimed" in run.stdout and "COMPLETED" in run.stdout  # the Python walk ran through
        spec = httpx.get(f"{up.base}/openapi.json", timeout=60).json()  # built on first use: slow when busy
    finally:
        up.stop()
    routes = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    documented = ROUTE.findall(DOC.read_text())
    assert len(documented) == len(set(documented)), "a route has two sections"
    assert set(documented) == routes, {
        "routes without a section": sorted(routes - set(documented)),
        "sections without a route": sorted(set(documented) - routes),
    }

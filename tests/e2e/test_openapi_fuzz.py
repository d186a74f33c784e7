"""Property-based fuzzing of the HTTP API against its own OpenAPI document (schemathesis).

The app is driven in process through ASGI (no socket) on the embedded stack, with real credentials
of one tenant, so generated requests get past authentication and reach validation and the services.
Every response must be: not a 5xx, a documented status code, of a documented content type, and
valid against the documented response schema.

Operations are fuzzed one by one (valid and invalid inputs), as the tenant's admin and again as a
business with its API key; then the links schemathesis infers between operations (POST /v1/businesses
-> GET /v1/businesses/{business_id} -> POST .../api-keys -> DELETE .../api-keys/{key_id}, ...) drive
stateful scenarios that reach real records instead of 404s.

PERS_FUZZ_EXAMPLES sets the size: examples per operation and per run, and stateful scenarios. The
default (50) sends about 2,800 requests, in under a minute on two cores; -s prints the counts.
"""

import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from eth_account import Account
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import APIOperation, BaseSchema, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from backend.kit.outbox import OutboxMessage
from tests.platform import Platform, bearer, create_tenant, siwe_sign_in, wait_for

EXAMPLES = int(os.environ.get("PERS_FUZZ_EXAMPLES", "50"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # Failures are collected (see `Findings`), not raised, so there is nothing to shrink or replay.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
REQUESTS: Counter[str] = Counter()


@dataclass(frozen=True)
class Credentials:
    """One tenant's callers; each operation gets the credentials that let it reach its service."""

    operator: dict[str, str]
    project: dict[str, str]
    admin: dict[str, str]
    business: dict[str, str]
    user: dict[str, str]

    def admin_run(self, label: str) -> dict[str, str]:
        special = {
            # Only the platform operator creates and lists tenants.
            "POST /v1/tenants": self.operator,
            "GET /v1/tenants": self.operator,
            # Sign-in and the SIWE nonce take the project key alone (a session token would win).
            "POST /v1/auth/siwe/nonce": self.project,
            "POST /v1/auth/token": self.project,
            "POST /v1/auth/refresh": self.project,
            # The caller's own business or user record.
            "GET /v1/businesses/me": self.business,
            "GET /v1/users/me": self.user,
            "PATCH /v1/users/me": self.user,
        }
        return special.get(label, self.admin)

    def business_run(self, label: str) -> dict[str, str]:
        return self.business


@dataclass
class Findings:
    """Check failures, collected rather than raised: the server keeps state between examples, so
    Hypothesis replaying a failing example would not see the same responses."""

    run: str
    failures: dict[str, str] = field(default_factory=dict)

    def call(self, case: schemathesis.Case, headers: dict[str, str]) -> None:
        headers = dict(headers)  # the transport adds to the dict it is given
        self.validate(case, self.send(case, headers), headers)

    def send(self, case: schemathesis.Case, headers: dict[str, str]) -> schemathesis.Response:
        try:
            return case.call(headers=headers)
        except Exception as exc:  # through ASGI an app crash raises; a server would answer 500
            self.record(case, headers, "Unhandled exception", repr(exc))
            raise

    def validate(
        self, case: schemathesis.Case, response: schemathesis.Response, headers: dict[str, str]
    ) -> None:
        REQUESTS[self.run] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                self.record(case, headers, failure.title, failure.message)

    def record(self, case: schemathesis.Case, headers: dict[str, str], title: str, message: str) -> None:
        key = f"{case.operation.label}: {title}"
        self.failures.setdefault(key, f"{message}\n{case.as_curl_command(headers)}")

    def report(self) -> str:
        return "\n\n".join(f"{key}\n{detail}" for key, detail in sorted(self.failures.items()))


def sign_up(embedded_platform: Platform, name: str) -> Credentials:
    client = embedded_platform.client
    tenant = create_tenant(embedded_platform, name)
    admin = tenant.with_project(tenant.admin_headers)
    business = client.post("/v1/businesses", json={"name": "Fuzz Shop"}, headers=admin)
    assert business.status_code == 201, business.text
    key = client.post(
        f"/v1/businesses/{business.json()['id']}/api-keys", json={"name": "fuzz"}, headers=admin
    )
    assert key.status_code == 201, key.text
    signed_in = siwe_sign_in(embedded_platform, tenant, Account.create())
    assert signed_in.status_code == 200, signed_in.text
    return Credentials(
        operator=embedded_platform.operator(),
        project=tenant.with_project(),
        admin=admin,
        business=tenant.with_project({"X-API-Key": key.json()["key"]}),
        user=tenant.with_project(bearer(signed_in.json()["accessToken"])),
    )


@pytest.fixture(scope="module")
def credentials(embedded_platform: Platform) -> Credentials:
    return sign_up(embedded_platform, "Fuzz")


@pytest.fixture(scope="module")
def untouched(embedded_platform: Platform) -> Credentials:
    """A tenant the fuzzing never touched: its stateful scenarios may demote or sign out the fuzzed
    tenant's admin (PATCH /v1/admins/{id} on itself), whichever routes the document lists."""
    return sign_up(embedded_platform, "Hostile")


@pytest.fixture(scope="module")
def api_schema(embedded_platform: Platform) -> BaseSchema:
    config = schemathesis.Config.from_dict(
        # Credentials come from `Credentials`, never generated.
        {"generation": {"mode": "all", "with-security-parameters": False}}
    )
    return schemathesis.openapi.from_asgi("/openapi.json", embedded_platform.client.app, config=config)


def test_security_schemes_documented(api_schema: BaseSchema) -> None:
    """Both API-key headers are documented (they once shared a scheme name and one replaced the other)."""
    schemes = api_schema.raw_schema["components"]["securitySchemes"]
    headers = {s.get("name") for s in schemes.values() if s["type"] == "apiKey"}
    assert headers == {"X-API-Key", "X-Project-Key"} and "HTTPBearer" in schemes


def fuzz(operation: APIOperation, headers: dict[str, str], findings: Findings) -> None:
    """Valid and invalid requests for one operation."""
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    strategy = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes))

    @SETTINGS
    @hypothesis.given(case=strategy)
    def requests(case: schemathesis.Case) -> None:
        findings.call(case, headers)

    requests()


# `schemathesis.pytest.from_fixture(...).parametrize()` would make one test per operation, but it
# reads `Function._nodeid`, which pytest 9.2 no longer has; subtests give the same per-operation report.
@pytest.mark.parametrize("run", ["admin", "business"])
def test_each_operation(
    run: str, api_schema: BaseSchema, credentials: Credentials, subtests: pytest.Subtests
) -> None:
    """Every documented operation, as the tenant's admin (or the caller the operation is for) and
    as a business with its API key."""
    operations = [result.ok() for result in api_schema.get_all_operations()]  # `ok()` raises on a bad one
    documented = sum(len(methods) for methods in api_schema.raw_schema["paths"].values())
    assert len(operations) == documented > 20
    headers_for = credentials.admin_run if run == "admin" else credentials.business_run
    started = time.monotonic()
    for operation in operations:
        with subtests.test(msg=operation.label):
            findings = Findings(run)
            fuzz(operation, headers_for(operation.label), findings)
            if findings.failures:
                pytest.fail(findings.report(), pytrace=False)
    print(f"\n{run}: {REQUESTS[run]} requests in {time.monotonic() - started:.1f}s")


def test_stateful_links(api_schema: BaseSchema, credentials: Credentials) -> None:
    """Scenarios of calls chained by the links schemathesis infers from the document."""
    findings = Findings("stateful")

    class Scenarios(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": dict(credentials.admin_run(case.operation.label))}

        def call(self, case: schemathesis.Case, **kwargs: Any) -> schemathesis.Response:
            return findings.send(case, kwargs["headers"])

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, *_: Any, **kwargs: Any
        ) -> None:
            findings.validate(case, response, kwargs["headers"])

    started, attempts = time.monotonic(), 0
    while REQUESTS["stateful"] < EXAMPLES * 6 and attempts < 10:
        attempts += 1
        try:
            hypothesis.seed(attempts)(Scenarios).run(
                settings=hypothesis.settings(SETTINGS, derandomize=False, stateful_step_count=6)
            )
        except FlakyStrategyDefinition:
            # The server's state changed which links can be followed, so Hypothesis saw a scenario
            # diverge from an earlier one with the same start: go on with another seed.
            continue
    if findings.failures:
        pytest.fail(findings.report(), pytrace=False)
    elapsed = time.monotonic() - started
    print(f"\nstateful: {REQUESTS['stateful']} requests in {elapsed:.1f}s ({attempts} runs)")


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("label", "body", "status", "code"),
    [
        # Refused before parsing: 100,000 levels crashed the process (the EVM libraries lift the
        # recursion limit, so the parser overflows the C stack); 5,000 shows the guard without that risk.
        ("POST /v1/auth/refresh", '{"refreshToken":' + "[" * 5000 + "]" * 5000 + "}", 400, "malformed_json"),
        # Stored fine, then too deep to serialize: a 500 on every later read of the user.
        ("POST /v1/users", f'{{"externalId":"deep","attributes":{nested(300)}}}', 400, "malformed_json"),
        # Valid JSON that parses to infinity (NaN is Python's own extension): Postgres refuses both.
        ("POST /v1/users", '{"externalId":"inf","attributes":{"a":1e400}}', 422, "invalid_value"),
        ("PATCH /v1/users/me", '{"profile":{"a":[NaN]}}', 422, "invalid_value"),
    ],
)
def test_hostile_json_bodies(
    label: str,
    body: str,
    status: int,
    code: str,
    api_schema: BaseSchema,
    embedded_platform: Platform,
    untouched: Credentials,
) -> None:
    """JSON that schemathesis does not generate, found by hand while fuzzing: a documented error."""
    method, path = label.split(" ")
    headers = {**untouched.admin_run(label), "Content-Type": "application/json"}
    response = embedded_platform.client.request(method, path, content=body, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    api_schema[path][method].validate_response(response)


def test_undeclared_methods(
    api_schema: BaseSchema, embedded_platform: Platform, credentials: Credentials
) -> None:
    """A method a path does not have: 405 in the error format, with the `Allow` header RFC 9110 requires,
    naming every method of the path (Starlette named only the first matching route's). A path can match
    several templates: PATCH /v1/businesses/me goes to PATCH /v1/businesses/{business_id}."""
    paths = api_schema.raw_schema["paths"]
    for path in paths:
        response = embedded_platform.client.request("TRACE", path, headers=dict(credentials.admin))
        assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
        allowed = {m.strip().lower() for m in response.headers.get("allow", "").split(",")} - {""}
        matching = [t for t in paths if re.fullmatch(re.sub(r"{\w+}", "[^/]+", t), path)]
        assert allowed == {m for t in matching for m in paths[t]}, (path, response.headers)


@pytest.fixture(scope="module", autouse=True)
def drained(embedded_platform: Platform) -> Iterator[None]:
    """Fuzzing creates tenants, businesses and tokens by the hundred; the tests after this module
    share the embedded worker, so the module ends when every job it caused has run."""
    yield
    runtime = embedded_platform.client.app.state.runtime  # type: ignore[attr-defined]

    def pending() -> int:
        with runtime.sessions() as session:
            query = select(func.count()).where(OutboxMessage.completed_at.is_(None))
            return int(session.scalar(query) or 0)

    started, left = time.monotonic(), pending()
    wait_for(pending, lambda n: n == 0, "the fuzzed jobs to finish", timeout=600)
    print(f"\n{left} jobs drained in {time.monotonic() - started:.1f}s")

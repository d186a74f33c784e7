"""An access rule declares, as its dependency's parameters, exactly the security schemes of the kinds
it admits (FastAPI builds the OpenAPI security from them); the public key's rules admit secret keys."""

import inspect

import pytest

from backend.auth.principal import ADMIN, BUSINESS, OPERATOR, PROJECT, USER, Auth


def schemes(rule: Auth) -> set[str]:
    parameters = inspect.signature(rule).parameters.values()
    return {p.default.dependency.scheme_name for p in parameters if p.default is not inspect.Parameter.empty}


def test_a_rule_declares_the_schemes_of_its_kinds() -> None:
    assert schemes(Auth(OPERATOR)) == {"HTTPBearer"}
    assert schemes(Auth(ADMIN, USER)) == {"HTTPBearer"}
    assert schemes(Auth(ADMIN, BUSINESS)) == {"HTTPBearer", "ApiKey"}
    assert schemes(Auth(PROJECT)) == {"ProjectKey", "HTTPBearer", "ApiKey"}


def test_what_the_project_key_may_do_a_business_may_do() -> None:
    assert Auth(PROJECT).kinds == {PROJECT, BUSINESS}
    with pytest.raises(ValueError, match="no API-key scope"):
        Auth(PROJECT, ADMIN, scope="tokens:read")

"""Who may try again: request budgets per credential and per client address, and budgets of failed
authentications, so guessing (passwords, keys, tokens) meets 429 long before it can succeed.

Every check that can refuse is made before anything is spent (`hit_all` spends all budgets or
none), so a refused request costs no one else's budget. Failed sign-ins are counted per (identity,
address): an attacker on one address cannot lock the real admin out of another. A slower budget per
identity backs that up against many addresses; once it is spent, only addresses that have not failed
for that identity may still try, so a correct password from a fresh address always gets through."""

import structlog
from fastapi import Request

from backend.kit.ratelimit import Budget, Rule
from backend.runtime import RateLimited, Runtime

log = structlog.get_logger()
SIGNIN_BURST_WINDOW = 10


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def client_address(request: Request) -> str:
    """The peer's address, or the forwarded one when the peer is a trusted proxy (see serve())."""
    return request.client.host if request.client else "unknown"


def _refuse_unless(
    runtime: Runtime, budgets: list[Budget], *, dry_run: bool = False, check: list[Budget] | None = None
) -> None:
    decision = runtime.rate_limiter.hit_all(budgets, dry_run=dry_run, check=check or ())
    if not decision.allowed:
        raise RateLimited("too many requests", retry_after=decision.retry_after)


def _request_budgets(runtime: Runtime, credential: str, address: str) -> list[Budget]:
    s = runtime.settings
    return [
        (f"key:{credential}", Rule(s.rate_limit_per_key, s.rate_limit_window)),
        (f"addr:{address}", Rule(s.rate_limit_per_address, s.rate_limit_window)),
    ]


def _auth_failures(runtime: Runtime, address: str) -> Budget:
    s = runtime.settings
    return f"authfail:{address}", Rule(s.rate_limit_auth_failures, s.rate_limit_window)


def enforce(request: Request, credential: str) -> None:
    """One request of an authenticated caller: its credential's budget and its address's, together."""
    runtime = _runtime(request)
    _refuse_unless(runtime, _request_budgets(runtime, credential, client_address(request)))


def authenticated(request: Request, credential: str) -> None:
    """`enforce` for credentials just checked, in one round trip: an address that failed to
    authenticate too often is refused even with good credentials, as `before_authentication` would."""
    runtime, address = _runtime(request), client_address(request)
    _refuse_unless(
        runtime, _request_budgets(runtime, credential, address), check=[_auth_failures(runtime, address)]
    )


def before_authentication(request: Request) -> None:
    """An address that failed to authenticate too often is refused before its credentials are checked."""
    runtime = _runtime(request)
    _refuse_unless(runtime, [_auth_failures(runtime, client_address(request))], dry_run=True)


def authentication_failed(request: Request) -> None:
    runtime = _runtime(request)
    runtime.rate_limiter.hit(*_auth_failures(runtime, client_address(request)))


def credentials_refused(request: Request) -> None:
    """`authentication_failed` for credentials checked before `before_authentication` (to spare it a
    round trip): an address with no failure left is answered 429, as that check would have, not told
    why its credentials failed."""
    runtime = _runtime(request)
    _refuse_unless(runtime, [_auth_failures(runtime, client_address(request))])


def _failure_budgets(runtime: Runtime, identity: str, address: str) -> tuple[Budget, Budget]:
    s = runtime.settings
    return (
        (f"signinfail:{identity}:{address}", Rule(s.signin_failures_per_address, s.signin_failure_window)),
        (f"signinfail:{identity}", Rule(s.signin_failures_per_identity, s.signin_failure_window)),
    )


def before_sign_in(request: Request, identity: str, *, password: bool) -> None:
    """A sign-in attempt: refused (spending nothing) when the address or the (identity, address) pair
    has failed too often; otherwise counted against the address, and for a password sign-in against
    the address's password budget, which is no bigger than what the password pool hashes in a second."""
    runtime, address = _runtime(request), client_address(request)
    before_authentication(request)
    here, everywhere = _failure_budgets(runtime, identity, address)
    _refuse_unless(runtime, [here], dry_run=True)
    if not runtime.rate_limiter.hit_all([everywhere], dry_run=True).allowed:
        # The identity is under attack from many addresses: only addresses without a failure may try.
        fresh = runtime.rate_limiter.hit_all([here], dry_run=True).remaining == here[1].limit - 1
        if not fresh:
            raise RateLimited("too many failed sign-ins", retry_after=runtime.settings.signin_failure_window)
    s = runtime.settings
    budgets = _request_budgets(runtime, f"signin:{identity}:{address}", address)[1:]
    if password:
        budgets.append((f"signin:{address}", Rule(s.rate_limit_signin_per_address, SIGNIN_BURST_WINDOW)))
    _refuse_unless(runtime, budgets)


def sign_in_failed(request: Request, identity: str) -> None:
    runtime, address = _runtime(request), client_address(request)
    for budget in _failure_budgets(runtime, identity, address):
        runtime.rate_limiter.hit(*budget)
    authentication_failed(request)


def audit(request: Request, kind: str, principal: str, outcome: str) -> None:
    """One line per sign-in attempt: who, from where, and how it ended. Never a secret."""
    log.info("auth.signin", kind=kind, principal=principal, address=client_address(request), outcome=outcome)

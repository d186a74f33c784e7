"""The FastAPI application: middleware, error handlers, routers, health endpoints."""

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic.alias_generators import to_camel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match

from backend import __doc__ as description
from backend.analytics.router import router as analytics_router
from backend.audit.router import router as audit_router
from backend.auth.principal import DeferredAuth
from backend.auth.router import admins as admins_router
from backend.auth.router import router as auth_router
from backend.balances.router import router as balances_router
from backend.businesses.router import router as businesses_router
from backend.campaigns.router import engagements_router, events_router, sources_router
from backend.campaigns.router import router as campaigns_router
from backend.kit.api import error_responses, known_query_parameters
from backend.kit.body import ASGIApp, BodyLimit, Message, Receive, Scope, Send
from backend.kit.errors import PersError
from backend.kit.types import FIELD_CODES
from backend.ops import indexing, metrics
from backend.ops.router import router as ops_router
from backend.redemptions.router import router as redemptions_router
from backend.relay.router import router as transactions_router
from backend.runtime import Runtime
from backend.tenants.router import router as tenants_router
from backend.tiers.router import router as tiers_router
from backend.tiers.router import users_router as user_status_router
from backend.tokens.router import router as tokens_router
from backend.users.router import router as users_router
from backend.webhooks.router import router as webhooks_router
from backend.worker import celery_app  # also registers how the API dispatches its outbox jobs

log = structlog.get_logger()
# Matched in this order, route by route: the relay's (the hottest requests) first.
ROUTERS = (
    transactions_router,
    auth_router,
    tenants_router,
    admins_router,
    businesses_router,
    users_router,
    tokens_router,
    balances_router,
    ops_router,
    redemptions_router,
    webhooks_router,
    audit_router,
    campaigns_router,
    sources_router,
    engagements_router,
    events_router,
    analytics_router,
    tiers_router,
    user_status_router,
)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


# When a request has several problems, the code names the most telling one (a range code such as
# `max_supply_out_of_range` ranks with `amount_out_of_range`).
CODE_PRECEDENCE = (
    "unknown_field",
    "invalid_address",
    "amount_must_be_string",
    "invalid_amount",
    "amount_out_of_range",
    "field_too_large",
    "invalid_type",
    "invalid_value",
    "missing_field",
)


def validation_code(error: dict[str, Any]) -> str:
    """A machine-readable code for the first thing wrong with a request."""
    kind = str(error["type"])
    if kind in FIELD_CODES or kind.endswith("_out_of_range"):  # raised by our own field types
        return kind
    if kind == "extra_forbidden":
        return "unknown_field"
    if kind == "missing":
        return "missing_field"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "invalid_type"
    return "invalid_value"


def _rank(code: str) -> int:
    return CODE_PRECEDENCE.index("amount_out_of_range" if code.endswith("_out_of_range") else code)


def allowed_methods(app: FastAPI, scope: dict[str, Any]) -> str:
    """Every method the path accepts, across all the routes matching it (Starlette names only the
    first route's)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.router.routes):  # the included routers' routes too
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


def log_request(scope: Scope, status: int, started: float) -> None:
    """One info line per request: the route's template (not the raw path, which may carry ids), who;
    counted in the metrics under the same template."""
    template = getattr(scope.get("route"), "path", None)
    seconds = time.perf_counter() - started
    metrics.observe_request(scope["method"], template, status, seconds)
    principal = scope.get("state", {}).get("principal")  # set by `Auth`
    tenant = getattr(principal, "scope", None)
    log.info(
        "http.request",
        method=scope["method"],
        path=template or scope["path"],
        status=status,
        ms=round(seconds * 1000, 2),
        tenant=str(tenant.tenant_id) if tenant else None,
        environment=tenant.environment if tenant else None,
        caller=getattr(principal, "kind", None),
    )


class RequestContext:
    """ASGI middleware: the request id (the caller's `X-Request-Id`, else a new one) on the answer and on
    every log line of the request, one access log line, and no NUL characters in the URL. Pure ASGI:
    Starlette's `BaseHTTPMiddleware` runs the app in a task of its own and streams the answer through
    a memory channel, which cost more CPU than the relay's whole accept path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        rid = rid or uuid.uuid4().hex
        header = (b"x-request-id", rid.encode("latin-1"))
        if "\x00" in unquote(scope["path"] + "?" + scope["query_string"].decode("latin-1")):
            # Postgres cannot store or compare NUL characters: refuse them at the door.
            body = error_body("invalid_value", "the URL contains a NUL character")
            await JSONResponse(body, status_code=400, headers={"x-request-id": rid})(scope, receive, send)
            return
        status = 500  # unless the app answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # logged here, with the request id; the outermost handler answers 500
            log.exception("http.unhandled")
            status = 500
            raise
        finally:
            log_request(scope, status, started)
            structlog.contextvars.unbind_contextvars("request_id")


def refusal(exc: PersError) -> JSONResponse:
    headers = {"Retry-After": str(exc.details["retry_after"])} if "retry_after" in exc.details else None
    # The API's names (`retryAfter`), like everything else in its bodies.
    details = {to_camel(key): value for key, value in exc.details.items()}
    return JSONResponse(error_body(exc.code, exc.message, details), status_code=exc.status, headers=headers)


async def credentials_first(request: Request) -> JSONResponse | None:
    """The refusal of the caller's credentials, if a route that checks them itself (`DeferredAuth`)
    was refused before it could: they are told before anything about the input, as on every route."""
    rule: DeferredAuth | None = getattr(request.state, "deferred_auth", None)
    if rule is None or getattr(request.state, "auth_checked", False):
        return None
    try:
        await run_in_threadpool(rule.check_apart, request)
    except PersError as exc:
        return refusal(exc)
    return None


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("api.started", network=runtime.settings.network)
        yield
        log.info("api.stopped")

    app = FastAPI(
        title="PERS",
        version="1",
        description=description or "",
        lifespan=lifespan,
        dependencies=[Depends(known_query_parameters)],
        responses=error_responses(413),  # any route, for a body over PERS_MAX_BODY_BYTES
        # No OpenTelemetry here (metrics are Prometheus'): spares each request FastAPI's provider checks.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.exposition = metrics.Exposition(metrics.StateCollector(runtime))
    for router in ROUTERS:
        app.include_router(router)
    # Inside the request context, so its refusals carry the request id too.
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(RequestContext)

    @app.exception_handler(PersError)
    async def pers_error(request: Request, exc: PersError) -> JSONResponse:
        return await credentials_first(request) or refusal(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if (refused := await credentials_first(request)) is not None:
            return refused
        errors = list(exc.errors())
        details = {"errors": [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]}
        if any(e["type"] == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("malformed_json", "the body is not valid JSON", details), status_code=400
            )
        code = min((validation_code(e) for e in errors), key=_rank, default="invalid_value")
        return JSONResponse(error_body(code, "invalid request", details), status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:  # logged by the request middleware
        return JSONResponse(error_body("internal_error", "something went wrong on our side"), status_code=500)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: `Allow` names every method the resource supports
            headers["Allow"] = allowed_methods(app, dict(request.scope))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "a dependency is down"}})
    def readyz() -> JSONResponse:
        """Readiness: the database, the broker and the chains of the test and live environments answer.
        `failed` names the checks that did not. The indexer's lag is reported, not judged: a mirror
        behind the chain makes balances older (they carry `asOfBlock`), not the API unready."""
        checks = {
            "database": _check(lambda: _ping_database(runtime)),
            "broker": _check(lambda: _ping_broker(runtime)),
            "chain": _check(lambda: _ping_chain(runtime, "test")),
        }
        if runtime.settings.live_network not in (None, runtime.settings.network_for("test")):
            checks["liveChain"] = _check(lambda: _ping_chain(runtime, "live"))
        checks["indexer"] = _check(lambda: _indexer_lag(runtime))
        failed = [name for name, check in checks.items() if not check["ok"]]
        body = {"status": "unavailable" if failed else "ok", "failed": failed, "checks": checks}
        return JSONResponse(body, status_code=503 if failed else 200)

    return app


def _check(probe: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return {"ok": True, **probe()}
    except Exception as exc:  # any failure of a dependency means not ready
        return {"ok": False, "error": type(exc).__name__}


def _ping_database(runtime: Runtime) -> dict[str, Any]:
    with runtime.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return {"dialect": runtime.engine.dialect.name}


def _ping_broker(runtime: Runtime) -> dict[str, Any]:
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    return {"transport": connection.transport_cls}


def _indexer_lag(runtime: Runtime) -> dict[str, Any]:
    with runtime.sessions() as session:
        lags = {network: indexing.lag(runtime, session, network) for network in indexing.networks(runtime)}
    return {
        "networks": {
            network: None
            if found is None
            else {
                "block": found.block,
                "head": found.head,
                "lagBlocks": found.blocks,
                "lagSeconds": found.seconds,
            }
            for network, found in lags.items()
        }
    }


def _ping_chain(runtime: Runtime, environment: str) -> dict[str, Any]:
    network = runtime.settings.network_for(environment)
    if network is None:
        return {"network": None}
    return {"network": network, "block": runtime.chain(network).w3.eth.block_number}

"""Operator routes: the relayer wallets and the Prometheus metrics."""

from fastapi import APIRouter, Request, Response

from backend.auth.principal import OperatorAuth
from backend.kit.api import error_responses
from backend.kit.session import DbSession
from backend.ops import metrics, relayer

router = APIRouter(tags=["operations"], responses=error_responses(400, 401, 403, 422, 429))


@router.get("/v1/relayer/status", response_model=relayer.RelayerStatus)
def relayer_status(request: Request, session: DbSession, _: OperatorAuth) -> relayer.RelayerStatus:
    """Relayer wallets per network in use: balance, nonces (chain, pending, the relay's own), and the
    relay's queue. A network whose node cannot be reached is listed with its `error`."""
    return relayer.status(request.app.state.runtime, session)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
def prometheus(request: Request, _: OperatorAuth) -> Response:
    """The Prometheus exposition (operator token; PERS_METRICS_PORT serves it without one)."""
    return Response(metrics.render(request.app.state.exposition), media_type=metrics.CONTENT_TYPE)

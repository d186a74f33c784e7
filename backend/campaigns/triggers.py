"""Triggers (what fires a claim, with its limits), their conditions on event properties, and trigger
sources: QR codes whose payloads are `<source id>.<expiry>.<HMAC-SHA256>` under a per-source secret
sealed at rest, so a printed or screenshotted code stops working when it expires."""

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from backend.auth.principal import BUSINESS, Forbidden, Principal
from backend.businesses.models import Business
from backend.campaigns.models import Trigger, TriggerSource
from backend.campaigns.schemas import Condition, QrPayload, TriggerCreate, TriggerSourceCreate
from backend.campaigns.service import managed
from backend.kit.errors import NotFound, PersError
from backend.kit.keystore import Keystore
from backend.kit.scope import get_scoped, scoped


class InvalidCondition(PersError):
    code = "invalid_condition"
    status = 422


def _number(value: Any) -> Decimal:
    """A comparable number: a JSON integer or a decimal string (no floats: they round)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidOperation
    number = Decimal(value)
    if not number.is_finite():
        raise InvalidOperation
    return number


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | bool)


def check_condition(condition: Condition) -> dict[str, Any]:
    """The condition as stored, or `invalid_condition` naming what is wrong with it."""
    operator, value = condition.operator, condition.value
    try:
        if operator == "equals" and not _scalar(value):
            raise InvalidCondition("`equals` compares with a string, integer, boolean or null")
        if operator == "in" and (not isinstance(value, list) or not value or not all(map(_scalar, value))):
            raise InvalidCondition("`in` takes a non-empty list of strings, integers, booleans or nulls")
        if operator in ("gte", "lte"):
            _number(value)
        if operator == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise InvalidCondition("`between` takes [low, high]")
            if _number(value[0]) > _number(value[1]):
                raise InvalidCondition("`between` takes [low, high] with low <= high")
    except InvalidOperation:
        raise InvalidCondition(f"`{operator}` compares with integers or decimal strings") from None
    return {"property": condition.property, "operator": operator, "value": value}


def matches(conditions: Sequence[dict[str, Any]], properties: dict[str, Any]) -> bool:
    return all(_holds(c, properties) for c in conditions)


def _holds(condition: dict[str, Any], properties: dict[str, Any]) -> bool:
    if condition["property"] not in properties:
        return False
    found, operator, value = properties[condition["property"]], condition["operator"], condition["value"]
    if operator == "equals":
        return bool(found == value and type(found) is type(value))
    if operator == "in":
        return any(found == v and type(found) is type(v) for v in value)
    try:
        number = _number(found)
    except InvalidOperation:
        return False  # a property that is not a number meets no numeric condition
    if operator == "gte":
        return number >= _number(value)
    if operator == "lte":
        return number <= _number(value)
    return _number(value[0]) <= number <= _number(value[1])


def create_trigger(session: Session, caller: Principal, campaign_id: str, data: TriggerCreate) -> Trigger:
    campaign = managed(session, caller, campaign_id)
    if data.type == "api_event" and data.event_name is None:
        raise PersError("an `api_event` trigger names its `eventName`", code="missing_field", status=422)
    if data.type != "api_event" and (data.event_name is not None or data.conditions):
        raise PersError(
            "`eventName` and `conditions` belong to `api_event` triggers", code="invalid_value", status=422
        )
    if data.type != "api_event" and data.completion_threshold != 1:
        raise PersError(
            "`completionThreshold` counts events: `api_event` triggers only", code="invalid_value", status=422
        )
    trigger = Trigger(
        id=uuid.uuid4(),
        tenant_id=campaign.tenant_id,
        environment=campaign.environment,
        campaign_id=campaign.id,
        type=data.type,
        event_name=data.event_name,
        conditions=[check_condition(c) for c in data.conditions],
        max_per_user=data.max_per_user,
        max_per_day=data.max_per_day,
        min_cooldown_seconds=data.min_cooldown_seconds,
        completion_threshold=data.completion_threshold,
    )
    session.add(trigger)
    session.flush()
    return trigger


def campaign_triggers(session: Session, caller: Principal, campaign_id: str) -> Select[Trigger]:
    campaign = managed(session, caller, campaign_id)
    return select(Trigger).where(Trigger.campaign_id == campaign.id).order_by(Trigger.created_at, Trigger.id)


def _secret_context(source_id: uuid.UUID) -> str:
    return f"trigger-source:{source_id}:secret"


def create_source(
    session: Session, keystore: Keystore, caller: Principal, data: TriggerSourceCreate
) -> TriggerSource:
    trigger = get_scoped(session, Trigger, caller.tenant, data.trigger_id, environment=True)
    managed(session, caller, trigger.campaign_id)  # a business adds sources to its own campaigns
    if trigger.type != "qr_code":
        raise PersError("a QR code source fires a `qr_code` trigger", code="invalid_trigger_type", status=422)
    business_id = data.business_id
    if caller.kind == BUSINESS:
        if business_id not in (None, caller.subject_id):
            raise Forbidden("a business creates sources at its own venue")
        business_id = caller.subject_id
    if business_id is not None:
        business = session.get(Business, business_id)
        if business is None or business.tenant_id != caller.tenant.tenant_id:
            raise NotFound("business not found", code="business_not_found")
    source_id = uuid.uuid4()
    source = TriggerSource(
        id=source_id,
        tenant_id=trigger.tenant_id,
        environment=trigger.environment,
        trigger_id=trigger.id,
        business_id=business_id,
        type="qr_code",
        name=data.name,
        secret_sealed=keystore.seal(secrets.token_bytes(32), _secret_context(source_id)),
        payload_seconds=data.payload_seconds,
    )
    session.add(source)
    session.flush()
    return source


def listed_sources(caller: Principal) -> Select[TriggerSource]:
    query = scoped(TriggerSource, caller.tenant, environment=True)
    if caller.kind == BUSINESS:
        query = query.where(TriggerSource.business_id == caller.subject_id)
    return query.order_by(TriggerSource.created_at, TriggerSource.id)


def get_source(session: Session, caller: Principal, source_id: str | uuid.UUID) -> TriggerSource:
    source = get_scoped(session, TriggerSource, caller.tenant, source_id, environment=True)
    if caller.kind == BUSINESS and source.business_id != caller.subject_id:
        raise NotFound("triggersource not found")
    return source


def _mac(keystore: Keystore, source: TriggerSource, expires: int) -> str:
    key = keystore.open(source.secret_sealed, _secret_context(source.id))
    return hmac.new(key, f"{source.id}.{expires}".encode(), hashlib.sha256).hexdigest()


def issue_payload(session: Session, keystore: Keystore, caller: Principal, source_id: str) -> QrPayload:
    source = get_source(session, caller, source_id)
    expires = int(time.time()) + source.payload_seconds
    payload = f"{source.id}.{expires}.{_mac(keystore, source, expires)}"
    return QrPayload(payload=payload, expires_at=datetime.fromtimestamp(expires, UTC))


def verify_payload(keystore: Keystore, source: TriggerSource, payload: str | None) -> None:
    """A claim through a QR source carries one of its payloads, unexpired and signed by its secret."""
    if payload is None:
        raise PersError("a claim through a QR source sends its `payload`", code="missing_field", status=422)
    parts = payload.split(".")
    if len(parts) != 3 or parts[0] != str(source.id) or not parts[1].isdigit():
        raise PersError("not a payload of this source", code="invalid_payload", status=422)
    if not hmac.compare_digest(parts[2], _mac(keystore, source, int(parts[1]))):
        raise PersError("not a payload of this source", code="invalid_payload", status=422)
    if int(parts[1]) < time.time():
        raise PersError("the QR payload has expired", code="payload_expired", status=422)

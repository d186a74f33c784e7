"""Events: user actions a business reports (`POST /v1/events`). Each fires the tenant's active
`api_event` triggers of its name whose conditions its properties meet, each trigger on its own (a
savepoint apiece: one refused does not undo another's claim). An event id is processed once per
tenant environment: a repeat, even a concurrent one, gets the first answer."""

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.auth.principal import BUSINESS, Principal
from backend.campaigns import claims, triggers
from backend.campaigns.models import Campaign, Engagement, Trigger, UserEvent
from backend.campaigns.schemas import EventCreate, EventOut, TriggerOutcome
from backend.kit.errors import Conflict, PersError
from backend.kit.scope import scoped
from backend.settings import Settings
from backend.users.models import User


def process(session: Session, settings: Settings, caller: Principal, data: EventCreate) -> EventOut:
    scope = caller.tenant
    first = scoped(UserEvent, scope, environment=True).where(UserEvent.external_id == data.id)
    found = session.scalar(first)
    if found is not None:
        return answer(found, caller)
    user = claims.resolve_user(session, caller, data)
    event = UserEvent(
        tenant_id=scope.tenant_id,
        environment=scope.environment,
        external_id=data.id,
        name=data.name,
        user_id=user.id,
        business_id=caller.subject_id if caller.kind == BUSINESS else None,
        properties=data.properties,
        result={"results": []},
    )
    try:
        with session.begin_nested():  # a concurrent first one makes this wait, then fail
            session.add(event)
            session.flush()
    except IntegrityError:
        found = session.scalar(first)
        if found is None:
            raise
        return answer(found, caller)
    outcomes = [
        _fire(session, settings, caller, event, user, c, t) for c, t in _listening(session, caller, data)
    ]
    event.result = {"results": [o.model_dump(mode="json", by_alias=True) for o in outcomes]}
    session.flush()
    return answer(event, caller)


def _listening(session: Session, caller: Principal, data: EventCreate) -> list[tuple[Campaign, Trigger]]:
    """The active triggers this event meets, in id order (claims lock in one order: no deadlocks). A
    business's events fire the triggers of its own campaigns and of those it is an accepted partner of."""
    query = (
        select(Campaign, Trigger)
        .join(Campaign, Campaign.id == Trigger.campaign_id)
        .where(
            Trigger.tenant_id == caller.tenant.tenant_id,
            Trigger.environment == caller.tenant.environment,
            Trigger.event_name == data.name,
            Trigger.type == "api_event",
            Campaign.status == "active",
        )
        .order_by(Trigger.id)
    )
    if caller.kind == BUSINESS:
        partnered = select(Engagement.campaign_id).where(
            Engagement.business_id == caller.subject_id, Engagement.status == "accepted"
        )
        query = query.where(or_(Campaign.business_id == caller.subject_id, Campaign.id.in_(partnered)))
    return [
        (c, t) for c, t in session.execute(query).all() if triggers.matches(t.conditions, data.properties)
    ]


def _fire(
    session: Session,
    settings: Settings,
    caller: Principal,
    event: UserEvent,
    user: User,
    campaign: Campaign,
    trigger: Trigger,
) -> TriggerOutcome:
    base = {"trigger_id": trigger.id, "campaign_id": campaign.id}
    try:
        with session.begin_nested():
            venue = caller.subject_id if caller.kind == BUSINESS else None
            target = claims.at(session, campaign, trigger, user, venue, event_id=event.id)
            fired = claims.fire(session, settings, caller, target)
    except PersError as exc:
        return TriggerOutcome.model_validate({**base, "outcome": "refused", "code": exc.code})
    if isinstance(fired, int):
        return TriggerOutcome.model_validate({**base, "outcome": "progress", "progress": fired})
    return TriggerOutcome.model_validate({**base, "outcome": "claimed", "claim_id": fired.id})


def answer(event: UserEvent, caller: Principal) -> EventOut:
    """The event's result; an id another business reported is not this caller's to read."""
    if event.business_id != (caller.subject_id if caller.kind == BUSINESS else None):
        raise Conflict("another caller reported an event with this id", code="event_id_taken")
    return EventOut.model_validate(
        {
            "id": event.external_id,
            "event_id": event.id,
            "name": event.name,
            "user_id": event.user_id,
            "results": event.result.get("results", []),
            "created_at": event.created_at,
        }
    )

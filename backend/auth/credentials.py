"""Secrets the platform issues and checks: password hashes (argon2), API keys and refresh tokens
(random, stored as SHA-256: they carry 256 bits of entropy, so a slow hash adds nothing), and
short-lived JWT access tokens."""

import hashlib
import hmac
import secrets
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backend.kit.db import utcnow
from backend.kit.errors import PersError

# OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): ~25 ms and 19 MiB a hash on one core. Hashes made
# with other parameters still verify (they carry their own) and are rehashed at the next sign-in.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
JWT_ALGORITHM = "HS256"
JWT_ISSUER = "pers"
JWT_AUDIENCE = "pers-api"
T = TypeVar("T")


class AuthError(PersError):
    code = "unauthenticated"
    status = 401


class PasswordPoolBusy(PersError):
    code = "rate_limited"
    status = 429


class PasswordPool:
    """Password hashing runs on a few dedicated threads, so a burst of sign-ins costs at most
    `workers` hashes of memory and CPU at once, and never the request threads other routes need.
    At most `queue` more wait; beyond that a sign-in is refused at once (429), not queued."""

    def __init__(self, workers: int = 2, queue: int = 6) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="argon2")
        self._slots = threading.BoundedSemaphore(workers + queue)

    def run(self, work: Callable[[], T]) -> T:
        if not self._slots.acquire(blocking=False):
            raise PasswordPoolBusy("too many sign-ins at once; retry shortly", retry_after=1)
        try:
            return self._executor.submit(work).result()
        finally:
            self._slots.release()


_pool = PasswordPool()


def hash_password(password: str) -> str:
    return _pool.run(lambda: _hasher.hash(password))


def password_matches(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return _pool.run(verify)


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# A verification against this hash costs the same as a real one, so unknown emails take as long.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def burn_password_check(password: str) -> None:
    password_matches(_DUMMY_HASH, password)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def new_secret(prefix: str) -> str:
    """`<prefix>_<43 url-safe chars>`: a project key, API key or refresh token."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class AccessClaims:
    kind: str  # admin | auditor | business | user
    subject_id: uuid.UUID
    tenant_id: uuid.UUID
    environment: str
    scopes: tuple[str, ...]
    expires_at: datetime
    session_id: uuid.UUID  # the refresh family: logging out or revoking it ends this token too
    api_key_id: uuid.UUID | None = None  # business sessions: the key they came from


def issue_access_token(key: bytes, claims: AccessClaims) -> str:
    payload = {
        "sub": str(claims.subject_id),
        "typ": claims.kind,
        "tid": str(claims.tenant_id),
        "env": claims.environment,
        "scp": list(claims.scopes),
        "iat": utcnow(),
        "exp": claims.expires_at,
        "jti": secrets.token_hex(8),
        "sid": str(claims.session_id),
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
    }
    if claims.api_key_id is not None:
        payload["kid"] = str(claims.api_key_id)
    return jwt.encode(payload, key, algorithm=JWT_ALGORITHM)


def read_access_token(key: bytes, token: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            audience=JWT_AUDIENCE,
            options={"require": ["exp", "sub", "typ", "tid", "env", "sid", "iss", "aud"]},
        )
        return AccessClaims(
            kind=str(payload["typ"]),
            subject_id=uuid.UUID(payload["sub"]),
            tenant_id=uuid.UUID(payload["tid"]),
            environment=str(payload["env"]),
            scopes=tuple(payload.get("scp", ())),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=utcnow().tzinfo),
            session_id=uuid.UUID(payload["sid"]),
            api_key_id=uuid.UUID(payload["kid"]) if "kid" in payload else None,
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("the access token has expired", code="token_expired") from exc
    except (jwt.InvalidTokenError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuthError("the access token is not valid", code="invalid_token") from exc


def expiry(seconds: int) -> datetime:
    return utcnow() + timedelta(seconds=seconds)

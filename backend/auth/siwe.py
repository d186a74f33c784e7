"""Sign-In with Ethereum (EIP-4361): parse, format and verify the signed sign-in message.

The message grammar (EIP-4361 ABNF, all line breaks are a single LF, no trailing LF):

    [ scheme "://" ] domain " wants you to sign in with your Ethereum account:" LF
    address LF
    LF
    [ statement LF ]
    LF
    "URI: " uri LF
    "Version: " version LF
    "Chain ID: " chain-id LF
    "Nonce: " nonce LF
    "Issued At: " issued-at
    [ LF "Expiration Time: " expiration-time ]
    [ LF "Not Before: " not-before ]
    [ LF "Request ID: " request-id ]
    [ LF "Resources:" *( LF "- " URI ) ]

So with a statement the address is followed by a blank line, the statement and another blank line;
without one, by two blank lines (`address\\n\\n\\nURI: ...`). An empty statement is refused, as the
reference implementations do: it would otherwise render as a third blank line.

Only EOA signatures (EIP-191 `personal_sign`) are checked; EIP-1271 contract wallets are not.
The nonce is the caller's business: it must check `message.nonce` against its single-use store.
"""

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_checksum_address
from eth_utils.exceptions import ValidationError

from backend.kit.errors import PersError


class SiweError(PersError):
    """A sign-in message that is malformed (400) or that does not prove who signed in (401)."""

    code = "siwe_invalid"
    status = 401


HEADER_SUFFIX = " wants you to sign in with your Ethereum account:"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_CHAIN_ID = 2**256 - 1

# RFC 3986 building blocks, ASCII only (never `\d` or `\w`, which match non-ASCII digits and letters).
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_SCHEME_RE = re.compile(_SCHEME)
_URI_RE = re.compile(
    rf"{_SCHEME}:"
    rf"(?://(?P<authority>[^/?#]*)(?:/{_PCHAR}*)*"  # "//" authority path-abempty
    rf"|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?"  # path-absolute
    rf"|{_PCHAR}+(?:/{_PCHAR}*)*"  # path-rootless
    r"|)"  # path-empty
    rf"(?:\?(?:{_PCHAR}|[/?])*)?"  # query
    rf"(?:#(?:{_PCHAR}|[/?])*)?"  # fragment
)
_AUTHORITY_RE = re.compile(
    rf"(?:(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*@)?"  # userinfo "@"
    rf"(?P<host>\[[^\]]*\]|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*)"  # IP-literal / IPv4 / reg-name
    r"(?::[0-9]*)?"  # port
)
_IPV_FUTURE_RE = re.compile(rf"[vV][0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+")
_STATEMENT_RE = re.compile(rf"[{_UNRESERVED}:/?#\[\]@{_SUB_DELIMS} ]+")
_REQUEST_ID_RE = re.compile(rf"{_PCHAR}*")
_ADDRESS_RE = re.compile(r"0x[0-9A-Fa-f]{40}")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_CHAIN_ID_RE = re.compile(r"[0-9]{1,78}")
# RFC 3339 date-time; "T" and "Z" are case-insensitive ABNF literals.
_DATE_TIME_RE = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))"
)


def _malformed(message: str, **details: object) -> SiweError:
    return SiweError(message, code="siwe_malformed", status=400, **details)


def _is_ip_literal(host: str) -> bool:
    inner = host[1:-1]
    if _IPV_FUTURE_RE.fullmatch(inner):
        return True
    if "%" in inner:  # Python accepts IPv6 zone ids; RFC 3986 does not
        return False
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        return False
    return True


def _is_authority(text: str, *, require_host: bool) -> bool:
    match = _AUTHORITY_RE.fullmatch(text)
    if match is None:
        return False
    host = match["host"]
    if host.startswith("["):
        return _is_ip_literal(host)
    return bool(host) or not require_host


def _is_uri(text: str) -> bool:
    match = _URI_RE.fullmatch(text)
    if match is None:
        return False
    authority = match["authority"]
    return authority is None or _is_authority(authority, require_host=False)


def _parse_time(text: str) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime (fraction truncated to microseconds), else None.
    Leap seconds (":60") cannot be represented and are refused."""
    match = _DATE_TIME_RE.fullmatch(text)
    if match is None:
        return None
    if match["utc"] is not None:
        tz = UTC
    else:
        offset_hour, offset_minute = int(match["offset_hour"]), int(match["offset_minute"])
        if offset_hour > 23 or offset_minute > 59:
            return None
        offset = timedelta(hours=offset_hour, minutes=offset_minute)
        tz = timezone(-offset if match["sign"] == "-" else offset)
    fraction = match["fraction"] or ""
    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            int(fraction[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        return None


def _representable(value: object) -> bool:
    """An aware datetime whose offset RFC 3339 can write (whole minutes)."""
    if not isinstance(value, datetime):
        return False
    offset = value.utcoffset()
    return offset is not None and offset % timedelta(minutes=1) == timedelta(0)


def _format_time(value: datetime, original: str | None) -> str:
    """`original` (the text the value was parsed from) when it still denotes exactly this value,
    else a canonical form: seconds, then milliseconds or microseconds only when needed, then "Z" or
    the datetime's own offset."""
    if original is not None:
        parsed = _parse_time(original)
        if parsed is not None and parsed == value and parsed.utcoffset() == value.utcoffset():
            return original
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond % 1000:
        text += f".{value.microsecond:06d}"
    elif value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    offset = value.utcoffset()
    assert offset is not None  # checked when the message was built
    if not offset:
        return text + "Z"
    minutes = int(abs(offset).total_seconds()) // 60
    return f"{text}{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class SiweMessage:
    """One EIP-4361 message. Building it validates every field against the grammar, so
    `format_message` always yields text that `parse` accepts and `parse(format_message(m)) == m`."""

    domain: str
    address: str
    statement: str | None
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()
    scheme: str | None = None
    # The timestamps as written in a parsed text, so that formatting reproduces it byte for byte.
    # Ignored (and a canonical form written) once they no longer denote the datetime fields.
    _issued_at_text: str | None = field(default=None, compare=False, repr=False, kw_only=True)
    _expiration_time_text: str | None = field(default=None, compare=False, repr=False, kw_only=True)
    _not_before_text: str | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        if self.scheme is not None and not (
            isinstance(self.scheme, str) and _SCHEME_RE.fullmatch(self.scheme)
        ):
            raise _malformed("scheme is not an RFC 3986 scheme", field="scheme")
        if not (isinstance(self.domain, str) and _is_authority(self.domain, require_host=True)):
            raise _malformed("domain is not an RFC 3986 authority", field="domain")
        if not (
            isinstance(self.address, str)
            and _ADDRESS_RE.fullmatch(self.address)
            and is_checksum_address(self.address)
        ):
            raise _malformed("address is not an EIP-55 checksummed address", field="address")
        if self.statement is not None and not (
            isinstance(self.statement, str) and _STATEMENT_RE.fullmatch(self.statement)
        ):
            raise _malformed("statement must be one non-empty line of RFC 3986 characters", field="statement")
        if not (isinstance(self.uri, str) and _is_uri(self.uri)):
            raise _malformed("uri is not an RFC 3986 URI", field="uri")
        if self.version != "1":
            raise _malformed("version must be 1", field="version")
        if not (
            isinstance(self.chain_id, int)
            and not isinstance(self.chain_id, bool)
            and 0 <= self.chain_id <= MAX_CHAIN_ID
        ):
            raise _malformed("chain id must be an integer in [0, 2**256)", field="chain_id")
        if not (isinstance(self.nonce, str) and _NONCE_RE.fullmatch(self.nonce)):
            raise _malformed("nonce must be at least 8 ASCII letters or digits", field="nonce")
        for name in ("issued_at", "expiration_time", "not_before"):
            value = getattr(self, name)
            if (value is not None or name == "issued_at") and not _representable(value):
                raise _malformed(
                    f"{name} must be a timezone-aware datetime (whole-minute offset)", field=name
                )
        if self.request_id is not None and not (
            isinstance(self.request_id, str) and _REQUEST_ID_RE.fullmatch(self.request_id)
        ):
            raise _malformed("request id must be RFC 3986 path characters", field="request_id")
        if not isinstance(self.resources, tuple) or not all(
            isinstance(resource, str) and _is_uri(resource) for resource in self.resources
        ):
            raise _malformed("resources must be a tuple of RFC 3986 URIs", field="resources")


class _Lines:
    """The message's lines with a cursor; errors name the 1-based line number."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.index = 0

    def peek(self) -> str | None:
        return self.lines[self.index] if self.index < len(self.lines) else None

    def take(self, prefix: str, what: str) -> str:
        """The rest of the next line, which must start with `prefix`."""
        line = self.peek()
        if line is None or not line.startswith(prefix):
            raise _malformed(f"expected {what} on line {self.index + 1}", line=self.index + 1)
        self.index += 1
        return line[len(prefix) :]

    def blank(self, what: str) -> None:
        if self.take("", what):
            raise _malformed(f"expected {what} on line {self.index}", line=self.index)

    def take_optional(self, prefix: str) -> str | None:
        line = self.peek()
        if line is None or not line.startswith(prefix):
            return None
        self.index += 1
        return line[len(prefix) :]

    def check(self, ok: bool, what: str) -> None:
        """Refuse the line just taken."""
        if not ok:
            raise _malformed(f"line {self.index} is not a valid {what}", line=self.index)


def parse(text: str) -> SiweMessage:
    """Parse an EIP-4361 message; `SiweError("siwe_malformed", 400)` unless it follows the ABNF exactly
    (and the address is EIP-55 checksummed)."""
    if not isinstance(text, str):
        raise _malformed("message must be text")
    lines = _Lines(text)

    header = lines.take("", "the header line")
    if not header.endswith(HEADER_SUFFIX):
        raise _malformed("line 1 is not '<domain> wants you to sign in with your Ethereum account:'", line=1)
    origin = header[: -len(HEADER_SUFFIX)]
    scheme, separator, domain = origin.partition("://")
    if not separator:
        scheme, domain = "", origin
    lines.check(
        (not separator or bool(_SCHEME_RE.fullmatch(scheme))) and _is_authority(domain, require_host=True),
        "[scheme://]domain header",
    )

    address = lines.take("", "the address")
    lines.check(bool(_ADDRESS_RE.fullmatch(address)) and is_checksum_address(address), "EIP-55 address")
    lines.blank("a blank line after the address")

    statement: str | None = lines.take("", "a blank line or the statement")
    if statement:
        lines.check(bool(_STATEMENT_RE.fullmatch(statement)), "statement")
        lines.blank("a blank line after the statement")
    else:
        statement = None

    uri = lines.take("URI: ", "'URI: '")
    lines.check(_is_uri(uri), "URI")
    version = lines.take("Version: ", "'Version: '")
    lines.check(version == "1", "version (must be 1)")
    chain_id = lines.take("Chain ID: ", "'Chain ID: '")
    lines.check(bool(_CHAIN_ID_RE.fullmatch(chain_id)) and int(chain_id) <= MAX_CHAIN_ID, "chain id")
    nonce = lines.take("Nonce: ", "'Nonce: '")
    lines.check(bool(_NONCE_RE.fullmatch(nonce)), "nonce (8 or more letters and digits)")
    issued_at_text = lines.take("Issued At: ", "'Issued At: '")
    issued_at = _parse_time(issued_at_text)
    lines.check(issued_at is not None, "RFC 3339 issued-at")

    expiration_text = lines.take_optional("Expiration Time: ")
    expiration_time = None if expiration_text is None else _parse_time(expiration_text)
    lines.check(expiration_text is None or expiration_time is not None, "RFC 3339 expiration time")
    not_before_text = lines.take_optional("Not Before: ")
    not_before = None if not_before_text is None else _parse_time(not_before_text)
    lines.check(not_before_text is None or not_before is not None, "RFC 3339 not-before")
    request_id = lines.take_optional("Request ID: ")
    lines.check(request_id is None or bool(_REQUEST_ID_RE.fullmatch(request_id)), "request id")
    resources: list[str] = []
    if lines.peek() == "Resources:":
        lines.index += 1
        while lines.peek() is not None:
            resource = lines.take("- ", "'- <resource URI>'")
            lines.check(_is_uri(resource), "resource URI")
            resources.append(resource)
    if lines.peek() is not None:
        raise _malformed(f"unexpected line {lines.index + 1}", line=lines.index + 1)

    assert issued_at is not None  # lines.check refused it otherwise
    return SiweMessage(
        domain=domain,
        address=address,
        statement=statement,
        uri=uri,
        version=version,
        chain_id=int(chain_id),
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=tuple(resources),
        scheme=scheme if separator else None,
        _issued_at_text=issued_at_text,
        _expiration_time_text=expiration_text,
        _not_before_text=not_before_text,
    )


def format_message(message: SiweMessage) -> str:
    """The canonical EIP-4361 text of `message`, the exact string the wallet signs. A parsed message
    keeps its timestamps as written; a leading-zero chain id or an empty "Resources:" list, which
    the grammar allows, come back as "1" and nothing."""
    origin = message.domain if message.scheme is None else f"{message.scheme}://{message.domain}"
    lines = [origin + HEADER_SUFFIX, message.address, ""]
    if message.statement is not None:
        lines.append(message.statement)
    lines += [
        "",
        f"URI: {message.uri}",
        f"Version: {message.version}",
        f"Chain ID: {message.chain_id}",
        f"Nonce: {message.nonce}",
        f"Issued At: {_format_time(message.issued_at, message._issued_at_text)}",
    ]
    if message.expiration_time is not None:
        lines.append(
            f"Expiration Time: {_format_time(message.expiration_time, message._expiration_time_text)}"
        )
    if message.not_before is not None:
        lines.append(f"Not Before: {_format_time(message.not_before, message._not_before_text)}")
    if message.request_id is not None:
        lines.append(f"Request ID: {message.request_id}")
    if message.resources:
        lines.append("Resources:")
        lines += [f"- {resource}" for resource in message.resources]
    return "\n".join(lines)


def recover_address(text: str, signature: bytes) -> str | None:
    """The EOA whose EIP-191 `personal_sign` signature of `text` this is (checksummed), or None when
    the signature is malformed: not 65 bytes r || s || v, v not 27/28 (or 0/1), r or s out of
    range, or s in the upper half of the curve order (the malleable twin, refused as elsewhere)."""
    if len(signature) != 65 or signature[64] not in (0, 1, 27, 28):
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        return None
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=bytes(signature)))
    except (BadSignature, ValidationError, ValueError):
        return None


def verify(
    text: str,
    signature: bytes,
    *,
    domain: str,
    chain_id: int,
    now: datetime,
    uri: str | None = None,
    skew: timedelta = timedelta(minutes=5),
) -> SiweMessage:
    """Parse `text` and check it is a sign-in for `domain` on `chain_id` (and `uri`, when given),
    valid at `now`, not issued more than `skew` in the future, and signed by its own address.
    Returns the message; the caller must still consume `message.nonce` exactly once."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if skew < timedelta(0):
        raise ValueError("skew must not be negative")
    message = parse(text)
    if message.domain != domain:
        raise SiweError(
            "message is for another domain",
            code="siwe_domain_mismatch",
            status=401,
            expected=domain,
            actual=message.domain,
        )
    if message.chain_id != chain_id:
        raise SiweError(
            "message is for another chain",
            code="siwe_chain_mismatch",
            status=401,
            expected=chain_id,
            actual=message.chain_id,
        )
    if uri is not None and message.uri != uri:
        raise SiweError(
            "message is for another URI",
            code="siwe_uri_mismatch",
            status=401,
            expected=uri,
            actual=message.uri,
        )
    if message.expiration_time is not None and now >= message.expiration_time:
        raise SiweError("message has expired", code="siwe_expired", status=401)
    if message.not_before is not None and now < message.not_before:
        raise SiweError("message is not valid yet", code="siwe_not_yet_valid", status=401)
    if message.issued_at > now + skew:
        raise SiweError("message is issued in the future", code="siwe_issued_in_future", status=401)
    if recover_address(text, signature) != message.address:
        raise SiweError("signature is not by the message's address", code="siwe_bad_signature", status=401)
    return message

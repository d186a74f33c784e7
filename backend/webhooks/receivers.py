"""Where a delivery may go. In `live`, a receiver must be https and resolve to public addresses only,
checked when subscribing and again, against the resolved address it then connects to, at every
delivery (a name that later resolves to 127.0.0.1 or 169.254.169.254 must not reach inside). `test`
takes any http(s) URL, loopback included, so local receivers and `pers up` work."""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from backend.kit.errors import PersError

MAX_URL = 2048


class ReceiverRefused(PersError):
    code = "webhook_url_not_allowed"
    status = 422


@dataclass(frozen=True)
class Target:
    url: str  # what to connect to: in `live`, the host replaced by the checked address
    netloc: str  # the receiver's own host[:port], for the Host header
    server_name: str  # and its name, for TLS (SNI and the certificate check)
    pinned: bool


def parse(url: str, environment: str) -> SplitResult:
    """The URL's syntax and scheme: refused with a code, before anything is stored."""
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReceiverRefused("the URL must be an absolute http(s) URL", code="invalid_webhook_url")
    if parts.username is not None or parts.password is not None:
        raise ReceiverRefused("the URL must not carry credentials", code="invalid_webhook_url")
    try:
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        raise ReceiverRefused("the URL's port is not valid", code="invalid_webhook_url") from None
    if environment == "live" and parts.scheme != "https":
        raise ReceiverRefused("live receivers must use https", code="webhook_url_not_https")
    return parts


def public_address(host: str, port: int) -> str:
    """One address of `host`, all of whose addresses are public; refused otherwise."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ReceiverRefused(
            f"the host {host!r} does not resolve", code="webhook_url_unresolvable"
        ) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses or any(not _public(a) for a in addresses):
        raise ReceiverRefused(
            "live receivers must resolve to public addresses (not private, loopback or link-local)",
            code="webhook_url_not_public",
        )
    return str(addresses[0])


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check(url: str, environment: str) -> Target:
    """The receiver to connect to: in `live`, pinned to a public address resolved now."""
    parts = parse(url, environment)
    host = parts.hostname
    assert host is not None  # parse() refuses a URL without one
    if environment != "live":
        return Target(url, parts.netloc, host, pinned=False)
    address = public_address(host, parts.port or 443)
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    return Target(parts._replace(netloc=netloc).geturl(), parts.netloc, host, pinned=True)

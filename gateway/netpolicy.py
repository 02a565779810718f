"""Which network addresses the gateway may connect to as an upstream, and who a client is.

Upstream URLs are set by administrators, but a URL naming a cloud metadata service, the gateway's
own host or a private network would let whoever edits a provider reach what the gateway can reach.
So the adapters' connections are checked when they are made (`guarded_socket`, the socket factory
of the pooled aiohttp connector): the address checked is the one the socket connects to, after DNS,
so a name that resolves to a public address at save time and to 127.0.0.1 later (DNS rebinding)
is refused too. Saving a provider checks an IP-literal host with the same rules
(`gateway.models.validate_http_url`).

Rules: a cloud metadata address (169.254.169.254, fd00:ec2::254, ...) is always refused. Every
other address that is not globally routable (loopback, link-local, RFC 1918 and unique-local
private ranges, carrier-grade NAT, unspecified, multicast, reserved) is refused unless
UPSTREAM_ALLOW_PRIVATE_NETWORKS is on: self-hosted model servers (vLLM, Ollama, TGI) on a private
network need it.

`client_address()` is the address failed-authentication limits count by: the peer's, or with
TRUSTED_PROXY_COUNT reverse proxies in front, the X-Forwarded-For entry the outermost of them
added. IPv6 clients count by their /64 (one host usually holds a whole /64).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS pod identity
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)


class AddressRefused(OSError):
    """A connection to an address the network policy does not allow (raised before connecting)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(errno.EACCES, f"{address} is {reason}; the gateway's network policy refuses it")
        self.address = address
        self.reason = reason


def parse_address(text: str) -> IPAddress | None:
    """An IP address from text ('[::1]', 'fe80::1%eth0' and IPv4-mapped IPv6 included), or None."""
    text = text.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal(address: IPAddress, *, allow_private: bool | None = None) -> str | None:
    """Why the gateway may not connect to `address` as an upstream, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private is None:
        allow_private = settings.UPSTREAM_ALLOW_PRIVATE_NETWORKS
    if allow_private or address.is_global:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    return "a private or reserved address"


def guarded_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp's socket factory: a socket for `addr_info`, or AddressRefused if policy forbids it."""
    family, type_, proto, _, sockaddr = addr_info
    host = str(sockaddr[0])
    address = parse_address(host)
    if address is None:
        raise AddressRefused(host, "not an IP address")
    reason = refusal(address)
    if reason is not None:
        raise AddressRefused(host, reason)
    return socket.socket(family=family, type=type_, proto=proto)


def refused_by_policy(exc: BaseException) -> str | None:
    """The policy's reason if a connection error came from `guarded_socket`, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AddressRefused):
            return str(current)
        os_error = getattr(current, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_error, AddressRefused):
            return str(os_error)
        current = current.__cause__ or current.__context__
    text = str(exc)
    return text if "network policy refuses" in text else None  # several addresses, all refused


# --- who the client is (failed-authentication limits) ---


def client_address(peer: str | None, forwarded_for: str | None) -> str:
    """The client's address as limits count it: the peer, or the X-Forwarded-For entry that the
    outermost of TRUSTED_PROXY_COUNT proxies added; an IPv6 address as its /64."""
    count = settings.TRUSTED_PROXY_COUNT
    if count and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        if len(hops) >= count and (address := parse_address(hops[-count])) is not None:
            return _counted(address)
    if peer and (address := parse_address(peer)) is not None:
        return _counted(address)
    return (peer or "unknown")[:64]


def _counted(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)

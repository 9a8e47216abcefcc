"""SSRF guard: deliveries may only reach global addresses, or those in ``WM_ALLOWED_CIDRS``.

Host names are checked in the connector's resolver, so the address that is checked is the
address that is connected to (no DNS-rebinding gap); IP literals are checked before the request.

An IPv6 address that carries an IPv4 address (IPv4-mapped ``::ffff:0:0/96``, IPv4-translated
``::ffff:0:0:0/96``, IPv4-compatible ``::/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``,
Teredo ``2001::/32``) is judged by the IPv4 address it carries (Teredo: its server and its
client); the local-use NAT64 prefix ``64:ff9b:1::/48``, whose embedding the operator chooses, and
the unspecified addresses ``0.0.0.0`` and ``::`` are always refused. A host that only the C
library's lenient parser reads as an IPv4 address (``2130706433``, ``127.1``, ``0177.0.0.1``,
``0x7f.1``, ``0``) is refused before any connection: only the dotted-decimal form is accepted.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from typing import Any

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
_HEX_LABEL = re.compile(r"0x[0-9a-f]*")


class BlockedTarget(OSError):
    """The target resolves only to addresses the guard refuses."""


def parse_cidrs(text: str) -> list[Network]:
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    ]


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address carries (Teredo: server and client), or None when
    it is not an IPv4-embedding form."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip in _NAT64 or ip in _V4_TRANSLATED:
        return [low32]
    if ip in _V4_COMPATIBLE and ip != _LOOPBACK_V6:  # ::1 is IPv6's own loopback
        return [low32]
    return None


def allowed(address: str, networks: list[Network]) -> bool:
    """True when deliveries may connect to ``address`` (an IP literal)."""
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.is_unspecified:  # connecting to 0.0.0.0 or :: reaches this host
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        carried = embedded_ipv4(ip)
        if carried is not None:
            return all(_allowed_one(v4, networks) for v4 in carried)
    return _allowed_one(ip, networks)


def _allowed_one(ip: Address, networks: list[Network]) -> bool:
    if ip.is_unspecified:
        return False
    if any(ip in net for net in networks):
        return True
    return ip.is_global and not ip.is_multicast


def noncanonical_ipv4(host: str) -> bool:
    """True when ``host`` is not a dotted-decimal IPv4 address but ends in a number, so that a
    resolver (inet_aton) or a URL parser may read it as one: ``2130706433``, ``127.1``,
    ``0177.0.0.1``, ``0x7f.1``, ``0``, ``127.0.0.1.`` (the WHATWG URL rule)."""
    if ":" in host:  # an IPv6 literal, judged as an address
        return False
    labels = host.lower().split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1] if labels else ""
    if not (last.isdigit() and last.isascii()) and not _HEX_LABEL.fullmatch(last):
        return False
    try:
        return str(ipaddress.IPv4Address(host)) != host
    except ValueError:
        return True


def literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_host(host: str, networks: list[Network]) -> None:
    """Raise :class:`BlockedTarget` when ``host`` is an IP literal the guard refuses, or a
    non-canonical IPv4 form."""
    refusal = _literal_refusal(host, tuple(networks))
    if refusal:
        raise BlockedTarget(refusal)


@functools.lru_cache(maxsize=4096)
def _literal_refusal(host: str, networks: tuple[Network, ...]) -> str | None:
    if noncanonical_ipv4(host):
        return (
            f"SSRF guard: host {host!r} ends in a number but is not a dotted-decimal IPv4 "
            "address (resolvers may read it as one)"
        )
    ip = literal_ip(host)
    if ip is not None and not allowed(ip, list(networks)):
        return f"SSRF guard: {ip} is not a global address (WM_ALLOWED_CIDRS)"
    return None


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops refused addresses."""

    def __init__(self, networks: list[Network]) -> None:
        self._inner = DefaultResolver()
        self._networks = networks

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if allowed(r["host"], self._networks)]
        if not kept:
            addresses = ", ".join(sorted({r["host"] for r in results}))
            raise BlockedTarget(
                f"SSRF guard: {host} resolves to {addresses}, not a global "
                "address (WM_ALLOWED_CIDRS)"
            )
        return kept

    async def close(self) -> None:
        await self._inner.close()

"""SSRF guard: deliveries may only reach global addresses, or those in ``WM_ALLOWED_CIDRS``.

Host names are checked in the connector's resolver, so the address that is checked is the
address that is connected to (no DNS-rebinding gap); IP literals are checked before the request.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedTarget(OSError):
    """The target resolves only to addresses the guard refuses."""


def parse_cidrs(text: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False)
            for part in text.split(",") if part.strip()]


def allowed(address: str, networks: list[Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in networks):
        return True
    return ip.is_global and not ip.is_multicast


def literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_host(host: str, networks: list[Network]) -> None:
    """Raise :class:`BlockedTarget` when ``host`` is an IP literal the guard refuses."""
    refusal = _literal_refusal(host, tuple(networks))
    if refusal:
        raise BlockedTarget(refusal)


@functools.lru_cache(maxsize=4096)
def _literal_refusal(host: str, networks: tuple[Network, ...]) -> str | None:
    ip = literal_ip(host)
    if ip is not None and not allowed(ip, list(networks)):
        return f"SSRF guard: {ip} is not a global address (WM_ALLOWED_CIDRS)"
    return None


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops refused addresses."""

    def __init__(self, networks: list[Network]) -> None:
        self._inner = DefaultResolver()
        self._networks = networks

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if allowed(r["host"], self._networks)]
        if not kept:
            addresses = ", ".join(sorted({r["host"] for r in results}))
            raise BlockedTarget(f"SSRF guard: {host} resolves to {addresses}, not a global "
                                "address (WM_ALLOWED_CIDRS)")
        return kept

    async def close(self) -> None:
        await self._inner.close()

"""Where paypost may send a practice's ledger requests (contract section 7).

A practice's system is reached over ``https`` only, and never at a loopback, link-local, private
or cloud-metadata address, unless its host is allowed by ``PAYPOST_LEDGER_ALLOWED_HOSTS`` (host
names or CIDRs, comma-separated; an allowed host may use plain ``http`` too). The rule is checked
when the integration is saved and again before requests are made, on the addresses the name
resolves to then: a name can resolve differently later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

from paypost.domain.errors import RefusedHost

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services answer on link-local addresses (refused with them) and on these.
METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                      ipaddress.ip_address("100.100.100.200")})
# What a name resolved to is trusted this long (a request each payment must not mean a lookup each).
RESOLVED_FOR = 30.0


def refused_address(address: Address) -> str | None:
    """Why paypost must not call this address, or None."""
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private or address.is_reserved or address.is_unspecified or address.is_multicast:
        return "a private or reserved address"
    return None


class HostPolicy:
    """The rule, with the hosts and networks ``PAYPOST_LEDGER_ALLOWED_HOSTS`` names."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._names: set[str] = set()
        self._networks: list[Network] = []
        for entry in filter(None, (a.strip().lower() for a in allowed)):
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._names.add(entry)
        self._resolved: dict[str, tuple[float, list[Address]]] = {}

    @classmethod
    def from_setting(cls, text: str) -> HostPolicy:
        return cls(text.split(","))

    def _allowed(self, host: str, addresses: Iterable[Address] = ()) -> bool:
        if host in self._names:
            return True
        try:
            literal: list[Address] = [ipaddress.ip_address(host)]
        except ValueError:
            literal = []
        candidates = literal or list(addresses)
        return bool(candidates) and all(any(a in n for n in self._networks) for a in candidates)

    async def check(self, url: str) -> None:
        """Raise ``RefusedHost`` naming the rule unless paypost may call ``url``."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise RefusedHost(f"{url!r} names no host")
        if parts.scheme not in ("https", "http"):
            raise RefusedHost(f"{parts.scheme or 'no scheme'}: a ledger is reached over https only")
        if self._allowed(host):
            return
        addresses = await self._resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        if self._allowed(host, addresses):
            return
        if parts.scheme != "https":
            raise RefusedHost(f"http://{host}: a ledger is reached over https only, unless its host is in "
                              "PAYPOST_LEDGER_ALLOWED_HOSTS")
        for address in addresses:
            if (why := refused_address(address)) is not None:
                raise RefusedHost(f"{host} resolves to {address}, {why}: refused unless allowed by "
                                  "PAYPOST_LEDGER_ALLOWED_HOSTS")

    async def _resolve(self, host: str, port: int) -> list[Address]:
        try:
            literal = ipaddress.ip_address(host)
            return [literal]
        except ValueError:
            pass
        known = self._resolved.get(host)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise RefusedHost(f"{host} does not resolve ({type(exc).__name__})") from exc
        # An IPv6 address may carry its zone ("fe80::1%eth0"): the address is what precedes it.
        addresses = sorted({ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}, key=str)
        self._resolved[host] = (time.monotonic() + RESOLVED_FOR, addresses)
        return addresses

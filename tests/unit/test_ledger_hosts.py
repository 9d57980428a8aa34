"""Where paypost may send a practice's ledger requests: https only, never a loopback, link-local,
private or metadata address, unless PAYPOST_LEDGER_ALLOWED_HOSTS allows the host."""

from __future__ import annotations

import pytest

from paypost.domain.errors import RefusedHost
from paypost.infra.ledgers.hosts import HostPolicy


@pytest.mark.parametrize("url", ["https://93.184.216.34/ledger", "https://[2606:2800:220:1::1]/ledger"])
async def test_a_public_address_over_https_is_allowed(url: str) -> None:
    await HostPolicy().check(url)


@pytest.mark.parametrize(("url", "rule"), [
    ("http://93.184.216.34/ledger", "https only"),
    ("ftp://93.184.216.34/ledger", "https only"),
    ("https://127.0.0.1/ledger", "a loopback address"),
    ("https://[::1]/ledger", "a loopback address"),
    ("https://10.1.2.3/ledger", "a private or reserved address"),
    ("https://192.168.0.10/ledger", "a private or reserved address"),
    ("https://169.254.169.254/latest/meta-data", "a cloud metadata address"),
    ("https://169.254.10.10/", "a link-local address"),
    ("https://localhost:8443/ledger", "a loopback address"),  # a name is judged by what it resolves to
    ("https:///no-host", "names no host"),
])
async def test_what_the_rule_refuses_is_named(url: str, rule: str) -> None:
    with pytest.raises(RefusedHost, match=rule):
        await HostPolicy().check(url)


async def test_allowed_hosts_and_networks_admit_what_the_rule_refuses_plain_http_too() -> None:
    policy = HostPolicy.from_setting("127.0.0.0/8, ::1/128, ledger.internal ,10.20.0.0/16")
    await policy.check("http://127.0.0.1:9000/ledger")
    await policy.check("http://ledger.internal/api")
    await policy.check("https://10.20.3.4/api")
    await policy.check("https://localhost:8443/ledger")  # resolves into an allowed network
    with pytest.raises(RefusedHost, match="a private or reserved address"):
        await policy.check("https://10.21.0.1/api")  # a network not named


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(RefusedHost, match="does not resolve"):
        await HostPolicy().check("https://no-such-host.invalid/ledger")

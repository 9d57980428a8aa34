"""How a request to a practice's system says it is paypost: no credentials, a bearer token, or an
OAuth2 access token from the client-credentials grant."""

from __future__ import annotations

import asyncio
import time

import httpx

from paypost.domain.errors import LoadFailure, RefusedHost
from paypost.domain.load_errors import LoadErrorCode
from paypost.handlers import metrics
from paypost.infra.ledgers.hosts import HostPolicy
from paypost.infra.ledgers.requests import answer


class NoCredentials:
    async def authorization(self) -> str | None:
        return None

    def refused(self) -> bool:
        return False


class BearerToken:
    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    async def authorization(self) -> str | None:
        return self._value

    def refused(self) -> bool:
        return False  # the same token would be refused again


class ClientCredentials:
    """An OAuth2 access token from the client-credentials grant, cached until shortly before it
    expires, and fetched again after the system refused it (a 401)."""

    EARLY = 30.0  # seconds before its expiry a token is fetched anew

    def __init__(self, client: httpx.AsyncClient, hosts: HostPolicy, token_url: str, client_id: str,
                 client_secret: str, scope: str | None, timeout: float) -> None:
        self._client = client
        self._hosts = hosts
        self._form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
                      **({"scope": scope} if scope else {})}
        self._token_url = token_url
        self._timeout = timeout
        self._token: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def authorization(self) -> str | None:
        async with self._lock:  # one fetch however many requests need the token at once
            if self._token is None or time.monotonic() >= self._until:
                self._token, self._until = await self._fetch()
            return f"Bearer {self._token}"

    def refused(self) -> bool:
        self._token = None
        return True

    async def _fetch(self) -> tuple[str, float]:
        try:
            await self._hosts.check(self._token_url)
        except RefusedHost as exc:
            raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED, f"Its token URL is refused: {exc}.") from exc
        response = await answer(self._client, "the token endpoint", "POST", self._token_url,
                                 data=self._form, within=self._timeout)
        metrics.TOKEN_FETCHES.labels("issued" if response.status_code == 200 else "refused").inc()
        if response.status_code != 200:
            raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED,
                              f"The practice's system refused paypost's client credentials ({response.status_code}).")
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise LoadFailure(LoadErrorCode.INTEGRATION_NOT_CONFIGURED,
                              "The practice's token endpoint gave no access_token.") from exc
        return token, time.monotonic() + max(0.0, lifetime - self.EARLY)

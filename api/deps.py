"""What the routes share: who is calling, and what it may reach (contract section 6).

``authenticate`` is a dependency of every ``/api/v1`` route (``paypost.api.app`` puts it on the
router they are all included in): it resolves the key (401 for none, 429 for an address that keeps
sending unknown keys, counted in the database every API process shares), refuses at once a practice
outside the key's scope that the call names (in its path, its query or its JSON body: 404, as for a
practice that is not set up, before the role or the body's validity is looked at), and hands the
route the application narrowed to that key (``Caller``), the only one a route can reach. ``Unscoped``
is the whole application, for the few calls that need no key (health, readiness, metrics).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from paypost.api.errors import ApiError
from paypost.domain.access import EVERY_PRACTICE, token_hash
from paypost.domain.access_trail import Via
from paypost.domain.alerts import practice_named_by
from paypost.handlers.application import Application
from paypost.handlers.keys import TooManyFailures, UnknownKey
from paypost.handlers.tenancy import ScopedApplication
from paypost.schemas.api.common import ErrorOut, codes_of
from paypost.schemas.types import PRACTICE_ID_PATTERN

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
bearer = HTTPBearer(auto_error=False, description="An API key: PAYPOST_API_TOKENS, or made with POST /api-keys")

API_V1 = "/api/v1"  # every route module's prefix (the access log names a route by its whole path)
# EventSource cannot send headers: the live feed also opens with a single-use ticket, ?ticket=
# (POST /api/v1/events/tickets). Never a key in a URL, where proxies log it (contract section 12).
STREAM_PATH = f"{API_V1}/events/stream"



def error_answer(status: int, *codes: str, when: str = "") -> dict[int | str, dict[str, Any]]:
    """An error answer as the document gives it: its body, and the codes it carries (``codes_of``
    the status unless named)."""
    named = list(codes) or codes_of(status)
    first = named[0]
    return {status: {"model": ErrorOut, "description": (when or "An error") + ": code " + " or ".join(named),
                     "content": {"application/json": {"example": {"error": {
                         "code": first, "message": f"what went wrong ({first})"}}}}}}


# The error answers every /api/v1 route documents; a route adds those only it gives (409, 503, ...).
ERRORS: dict[int | str, dict[str, Any]] = {
    **error_answer(401, when="No key, or a key paypost does not know"),
    **error_answer(403, when="The key's role may not do this"),
    **error_answer(404, when="Nothing there, or a practice outside the key's scope"),
    **error_answer(422, "invalid_request", when="A request that breaks a rule of the document; the message names it"),
    **error_answer(429, when="Too many unknown keys from this address (Retry-After says when to try again)"),
}
CONFLICT: dict[int | str, dict[str, Any]] = error_answer(409, when="The resource's state refuses it")
# A 400 only where it happens: a cursor not handed out; a practice's ledger paypost cannot use.
BAD_CURSOR = error_answer(400, "invalid_cursor", when="A cursor that is not a next_cursor paypost handed out")
BAD_LEDGER = error_answer(400, "unknown_ledger_kind", "invalid_ledger_settings", "refused_host", "secret_key_missing",
                          when="A ledger paypost cannot use: a kind not installed, settings its adapter refuses, "
                               "a host outside PAYPOST_LEDGER_ALLOWED_HOSTS, credentials and no key to seal them")

PracticeId = Annotated[str, Path(pattern=PRACTICE_ID_PATTERN, description="A practice id")]
AnyId = Annotated[str, Path(min_length=1, max_length=128)]


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return credentials.credentials
    return None  # none, or another scheme (Basic, ...): not a key


def _ticket(request: Request) -> str | None:
    if request.url.path == STREAM_PATH and not request.headers.get("authorization"):
        return request.query_params.get("ticket")
    return None


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ScopedApplication:
    """The caller's application, narrowed to its key; raises 401, 429 or 404 (a practice out of scope)."""
    application: Application = request.app.state.application
    token, ticket = _token(credentials), _ticket(request)
    if not token and not ticket:
        raise ApiError(401, "unauthorized", "Send Authorization: Bearer <token>.")
    client = client_address(request)  # PAYPOST_TRUSTED_PROXIES: X-Forwarded-For from them only
    try:
        if token:
            who, digest = await application.keys.admit(token, client), token_hash(token)
        else:
            who, digest = await application.keys.admit_ticket(ticket or "", client)
    except TooManyFailures as exc:
        raise ApiError(429, "too_many_requests", str(exc), headers={"Retry-After": str(exc.wait)}) from exc
    except UnknownKey as exc:
        raise ApiError(401, "unauthorized", str(exc)) from exc
    scoped = application.for_principal(who, Via(client, getattr(request.scope.get("route"), "path", "unmatched")))
    request.state.scoped = scoped
    request.state.token = token  # a ticket is asked for with the key itself (None with a ticket)
    request.state.token_digest = digest  # the live feed checks its key again while it streams
    for practice_id in await named_practices(request):
        scoped.guard.read(practice_id)
    return scoped


def _trusted(address: str, proxies: list[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Request) -> str:
    """The caller's address: the connection's peer, or, when the peer is one of
    ``PAYPOST_TRUSTED_PROXIES``, the first address of ``X-Forwarded-For`` (read from the right,
    past the trusted proxies) that is not a trusted proxy. A header from anyone else is ignored:
    a caller cannot name its own address."""
    peer = request.client.host if request.client else "unknown"
    proxies: list[IPNetwork] = getattr(request.app.state, "trusted_proxies", [])
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for header in request.headers.getlist("x-forwarded-for") for hop in header.split(",")]
    for hop in reversed(hops):
        if _trusted(hop, proxies):
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # not an address: the chain cannot be read past it
    return peer


async def named_practices(request: Request) -> list[str]:
    """The practices a call names: ``practice_id`` in its path or query, the practice of an alert id
    in its path, and ``practice_id`` or ``practices`` in a JSON body (read before it is validated, so
    that a body naming a practice out of scope is 404, not 422). A body that is not JSON names none."""
    named = [value for value in (request.path_params.get("practice_id"), request.query_params.get("practice_id"))
             if isinstance(value, str)]
    alert_id = request.path_params.get("alert_id")
    if isinstance(alert_id, str) and (practice := practice_named_by(alert_id)) is not None:
        named.append(practice)
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        raw = await request.body()  # FastAPI has read it already for a route with a body: this is its copy
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("practice_id"), str):
                named.append(body["practice_id"])
            practices = body.get("practices")
            if isinstance(practices, list):
                named += [p for p in practices if isinstance(p, str) and p != EVERY_PRACTICE]
    return named


Caller = Annotated[ScopedApplication, Depends(authenticate)]


def unscoped(request: Request) -> Application:
    """The whole application: only for the calls that need no key (health, readiness, metrics)."""
    application: Application = request.app.state.application
    return application


Unscoped = Annotated[Application, Depends(unscoped)]

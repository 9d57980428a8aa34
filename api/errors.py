"""Errors as ``{"error": {"code", "message"}}`` with a 4xx status; never a 500 for bad input."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from paypost.domain.access import AccessDenied
from paypost.domain.errors import BadCursor, RefusedHost
from paypost.domain.integrations import InvalidLedgerSettings, MissingSecretKey, UnknownLedgerKind
from paypost.domain.patient_search import SearchFailed, SearchNotOffered, SystemUnreachable
from paypost.handlers.changes import EmptySelection, InvalidCanary, MissingReason, SelectionTooLarge, UnknownGroup
from paypost.handlers.keys import InvalidKey
from paypost.handlers.practices import InvalidSearch, NotFound
from paypost.handlers.triage import AlertResolved, InvalidOverview, NotResolvable, NotSnoozable


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    sent = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    sent.update(headers or {})
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=sent or None)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for item in exc.errors()[:8]:
        loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    """Every error as the API answers it: its own, a request's that is not valid, and the handlers' named errors."""
    _install_request_errors(app)
    _install_handler_errors(app)


def _install_request_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(exc))

    @app.exception_handler(UnicodeEncodeError)
    async def _not_unicode(_: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # JSON can carry lone surrogates ("\\udaba"), which no database can store.
        return error_response(422, "invalid_request", "Text must be valid Unicode (a lone surrogate was sent).")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the framework's only 400: a body it could not read (not UTF-8, say)
            return error_response(422, "invalid_request", "The body could not be read: send JSON, in UTF-8.")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app answers at this request's path (RFC 9110: a 405 says them in
    ``Allow``). A path can be several routes (``GET`` and ``PUT /practices/{id}`` are two): each is asked
    in turn whether it takes the path with each method. The console's static files take ``GET`` and ``HEAD``."""
    allowed = []
    for method in METHODS:
        probe = {"type": "http", "method": method, "path": request.scope["path"],
                 "root_path": request.scope.get("app_root_path", request.scope.get("root_path", "")), "headers": []}
        for route in request.app.router.routes:
            match, _ = route.matches(probe)
            if match == Match.FULL:
                if not isinstance(route, Mount) or method in ("GET", "HEAD"):
                    allowed.append(method)
                break
    return allowed


def _install_handler_errors(app: FastAPI) -> None:
    """The handlers' named errors, as the API answers them."""

    answers: dict[type[Exception], tuple[int, str]] = {
        NotFound: (404, "not_found"),
        MissingSecretKey: (400, "secret_key_missing"),
        RefusedHost: (400, "refused_host"),
        UnknownLedgerKind: (400, "unknown_ledger_kind"),
        InvalidLedgerSettings: (400, "invalid_ledger_settings"),
        AccessDenied: (403, "forbidden"),
        InvalidKey: (422, "invalid_request"),
        UnknownGroup: (422, "unknown_group"),
        SelectionTooLarge: (422, "selection_too_large"),
        InvalidCanary: (422, "invalid_canary"),
        NotSnoozable: (422, "invalid_request"),
        AlertResolved: (409, "alert_resolved"),
        InvalidSearch: (422, "invalid_request"),
        InvalidOverview: (422, "invalid_request"),
        SearchNotOffered: (501, "search_not_offered"),
        SystemUnreachable: (503, "practice_system_unavailable"),
        SearchFailed: (502, "practice_system_error"),
        NotResolvable: (422, "invalid_request"),
    }

    async def _answer(_: Request, exc: Exception) -> JSONResponse:
        status, code = next(answers[kind] for kind in type(exc).__mro__ if kind in answers)
        return error_response(status, code, str(exc))

    for error in answers:
        app.add_exception_handler(error, _answer)

    @app.exception_handler(BadCursor)
    async def _bad_cursor(_: Request, exc: BadCursor) -> JSONResponse:
        return error_response(400, "invalid_cursor", str(exc))

    @app.exception_handler(MissingReason)
    @app.exception_handler(EmptySelection)
    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        return error_response(422, "invalid_request", str(exc))

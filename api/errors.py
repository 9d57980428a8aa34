"""Errors as ``{"error": {"code", "message"}}`` with a 4xx status; never a 500 for bad input."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


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
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

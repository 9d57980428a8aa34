"""The headers every answer of the API and the console carries (contract section 12).

- ``Content-Security-Policy``: the console's scripts, styles, images and calls come from paypost's own
  origin and nowhere else, no inline script or style runs, and no other site may frame it
  (``frame-ancestors 'none'``: no clickjacking of Save Changes).
- ``X-Content-Type-Options: nosniff``: a browser takes a JSON or CSV answer for what it says it is,
  never for a script or a page.
- ``Referrer-Policy: no-referrer``: a link followed from the console tells the next site nothing of
  the report's URL (its filters may name a patient account).
- ``Strict-Transport-Security`` when served over TLS: a browser that has seen paypost over HTTPS
  never tries it in plain HTTP again (a year, as browsers' preload lists ask).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeaders:
    """Adds ``HEADERS`` to every HTTP answer, and HSTS to those sent over TLS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        over_tls = scope.get("scheme") == "https"

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if over_tls:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, sending)

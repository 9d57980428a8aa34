"""`paypost run`: the consumers, the HTTP API and the console in one process."""

from __future__ import annotations

import enum
import gc
import os
import signal
import ssl
import sys
from typing import Annotated, Any

import typer

from paypost.cli.common import err, load_settings
from paypost.infra.runtime.logging import configure_logging
from paypost.infra.runtime.settings import Settings
from paypost.infra.runtime.tracing import TracingSettingError, configure_tracing
from paypost.local.servers import data_dir
from paypost.local.services import configured
from paypost.schemas import PAYPOST_VERSION


class RunRole(enum.StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"


def run(
    demo: Annotated[bool, typer.Option(help="Publish the demo payments once paypost is up.")] = False,
    local: Annotated[bool, typer.Option(help="Start a local mongod and RabbitMQ where none are configured.")] = True,
    role: Annotated[RunRole, typer.Option(
        help="all: consumers, API and console; api: the API and console only; worker: the consumers and "
             "background duties, serving only /healthz, /readyz and /metrics. Any number of each may run "
             "against the same broker and database.")] = RunRole.ALL,
) -> None:
    """Run the consumers, the HTTP API and the console until SIGTERM or Ctrl-C."""
    import uvicorn

    from paypost.bootstrap import Paypost
    from paypost.cli.server import serve
    from paypost.local.services import ensure_local_services

    directory = data_dir()
    started = ensure_local_services(directory) if local else None
    if demo and not configured("PAYPOST_LEDGER_ALLOWED_HOSTS"):
        # The demo's practice-management system runs on this machine: allowed for this run only.
        os.environ["PAYPOST_LEDGER_ALLOWED_HOSTS"] = "127.0.0.1"
    settings = load_settings()
    try:
        cert_file, key_file = https_files(settings)
    except typer.Exit:
        if started:
            started.stop()
        raise
    configure_logging(settings.log_level, settings.log_format)
    try:
        configure_tracing(PAYPOST_VERSION)  # OTEL_* (contract section 13); off when no endpoint is set
    except TracingSettingError as exc:
        err.print(f"paypost: {exc}")
        raise typer.Exit(2) from exc
    paypost = Paypost(settings)

    async def publish_demo() -> None:
        from paypost.local.demo_system import demo_system
        from paypost.producers.demo import run_demo, run_system_demo

        result = await run_demo(paypost.publish, paypost.application.practices)
        err.print(f"demo: published {result.published} messages for practice {result.practice_id}: "
                  f"{result.expect_loaded} should load, {result.expect_failed} should fail")
        system = demo_system(sealed=paypost.secrets is not None)
        await system.start()
        demos.append(system)
        result = await run_system_demo(paypost.publish, DemoSetup(paypost), system.ledger(paypost.secrets is not None))
        err.print(f"demo: practice {result.practice_id} posts into the practice-management system at {system.url} "
                  f"({'OAuth2' if paypost.secrets else 'no credentials: PAYPOST_SECRET_KEY is not set'}); "
                  f"its entries, tasks and flags: {system.url}/_entries and {system.url}/_alerts")

    demos: list[Any] = []

    api = paypost.http_app(role=role.value, after_start=publish_demo if demo else None)
    tokens = settings.tokens
    if started and "PAYPOST_API_TOKENS" in started.env:
        err.print(f"API tokens for this local run are in {directory / 'api-tokens'} (token:role:name).")
    scheme = "https" if cert_file else "http"
    if role is RunRole.WORKER:
        err.print(f"paypost worker: consuming; /healthz, /readyz and /metrics on {scheme}://{settings.http}")
    else:
        err.print(f"paypost ({role.value}) on {scheme}://{settings.http} (console at /, API at /api/v1, "
                  f"{len(tokens)} API token(s) configured)")
    tune_gc()
    # uvicorn re-raises the SIGTERM it caught once it has shut down (lifespan included); exit 0 then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # log_config=None: uvicorn's errors go through paypost's logging (structured, no locals); no access
        # log (its lines carry the query string: a patient account searched for).
        serve(uvicorn.Config(api, host=settings.http_host, port=settings.http_port, log_level="warning",
                             log_config=None, access_log=False, loop="uvloop" if sys.platform != "win32" else "asyncio",
                             lifespan="on", ssl_certfile=cert_file, ssl_keyfile=key_file))
    finally:
        if started:
            started.stop()


class DemoSetup:
    """The demo's practice set up as the API would (its secret sealed), and a mapping entered."""

    def __init__(self, paypost: Any) -> None:
        self._paypost = paypost

    async def practice(self, practice_id: str, name: str, ledger: dict[str, object]) -> object:
        return await self._paypost.application.practices.put(practice_id, name, ledger, True)

    async def mapping(self, practice_id: str, patient_account_id: str, ehr_patient_id: str) -> object:
        return await self._paypost.mapping_service.update(practice_id, patient_account_id, ehr_patient_id,
                                                          actor="demo", source="demo")


def https_files(settings: Settings) -> tuple[str | None, str | None]:
    """The certificate and key uvicorn serves HTTPS with (and then no plain HTTP), or (None, None).

    The pair is loaded once here, so an unreadable file or a key that does not match its
    certificate is a configuration error naming the variables, before anything starts.
    """
    if settings.http_tls_cert_file is None or settings.http_tls_key_file is None:
        return None, None
    cert, key = str(settings.http_tls_cert_file), str(settings.http_tls_key_file)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        err.print(f"[red]configuration error:[/red] PAYPOST_HTTP_TLS_CERT_FILE={cert} and "
                  f"PAYPOST_HTTP_TLS_KEY_FILE={key} cannot be used: {exc}")
        raise typer.Exit(2) from exc
    return cert, key


def tune_gc(young: int = 20_000) -> None:
    """Fewer garbage collections in a process that makes short-lived objects for every payment.

    What start-up imported and built lives as long as the process: it is frozen, so no full
    collection walks it again. A young collection runs every ``young`` allocations instead of 700;
    each one then finds mostly objects of payments already settled.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, 20, 20)

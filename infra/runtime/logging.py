"""Structured logs: ids and codes, never patient detail (contract section 12).

Every log line, paypost's own (structlog) and its libraries' (the standard ``logging`` module), goes
through the same processors and renderer: JSON lines (``PAYPOST_LOG_FORMAT=json``, a deployment's) or
the console's ``key=value`` lines. An exception is kept as structured data in both, the frames it
passed through and its type, never a frame's local variables (a message body, a memo); and its
message only where paypost knows what such a message says: a library's error may quote the data it
was given (a duplicate key's values, a validation error's input), a Load Error's detail the
practice's system's own words, so those are withheld and their type alone is shown.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from paypost.domain.errors import LoadFailure, PaypostError
from paypost.infra.runtime.trace_ids import add_trace_ids

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# Libraries whose INFO lines name what they were sent to: httpx logs each request's URL, and a flag's
# URL names the patient's practice-management id. Their warnings and errors still show.
QUIET = ("httpx", "httpcore")

_frames = ExceptionDictTransformer(show_locals=False, use_rich=False, max_frames=50)


def _quotable(error: BaseException) -> bool:
    """Whether ``error``'s message may be logged: paypost's own words, or a connection's."""
    if isinstance(error, LoadFailure):
        return False
    if isinstance(error, (PaypostError, OSError, TimeoutError)):
        return True
    module = type(error).__module__
    return module.startswith(("pymongo.errors", "aiormq", "aio_pika", "httpx", "ssl")) and _connection(error)


def _connection(error: BaseException) -> bool:
    """A driver's connection error (its message names hosts, not documents)."""
    names = {kind.__name__ for kind in type(error).__mro__}
    return bool(names & {"ConnectionFailure", "AMQPConnectionError", "ChannelInvalidStateError", "TransportError",
                         "ChannelClosed", "ConnectionClosed", "SSLError"})


def _shown(error: BaseException) -> str:
    if isinstance(error, LoadFailure):
        return f"{error.code.value} (the detail is withheld: it may quote the practice's system)"
    if _quotable(error):
        return str(error)[:500]
    return f"(withheld: a {type(error).__name__}'s message may quote the data it was given)"


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes, in the order structlog's transformer lists them."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return seen


def _redact(stacks: list[dict[str, Any]], error: BaseException) -> list[dict[str, Any]]:
    for stack, cause in zip(stacks, _chain(error), strict=False):
        stack["exc_value"] = _shown(cause)
        stack.pop("exc_notes", None)  # notes are free text too
        if stack.get("exceptions") and isinstance(cause, BaseExceptionGroup):
            stack["exceptions"] = [_redact(inner, sub) for inner, sub in zip(stack["exceptions"], cause.exceptions,
                                                                              strict=False)]
    return stacks


def _exc_info(value: object) -> ExcInfo | None:
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value
    if value is True:
        found = sys.exc_info()
        return found if found[1] is not None else None
    return None


def structured_traceback(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``exc_info`` as ``exception``: the chain of errors, each with its type, its frames (file, line,
    function; no locals) and its message where one may be shown."""
    found = _exc_info(event_dict.pop("exc_info", None))
    if found is not None:
        event_dict["exception"] = _redact(_frames(found), found[1])
    return event_dict


def _as_text(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The console's way of showing the structured traceback: one line per frame, then the error."""
    stacks = event_dict.get("exception")
    if isinstance(stacks, list):
        lines: list[str] = []
        for stack in reversed(stacks):  # the first cause first, as Python prints it
            lines.append("Traceback (most recent call last):")
            lines += [f'  File "{f["filename"]}", line {f["lineno"]}, in {f["name"]}' for f in stack.get("frames", [])]
            lines.append(f"{stack.get('exc_type')}: {stack.get('exc_value')}")
        event_dict["exception"] = "\n".join(lines)
    return event_dict


def processors(fmt: str) -> list[Processor]:
    """What a line goes through after its own fields and before it is written."""
    shared: list[Processor] = [structured_traceback]
    if fmt == "json":
        return [*shared, structlog.processors.JSONRenderer()]
    return [*shared, _as_text, structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_no_exception)]


def _no_exception(sio: Any, exc_info: Any) -> None:
    """Never called with an exception (``structured_traceback`` has taken it); there if it were."""


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """paypost's lines at ``level``, its libraries' at WARNING and above, all in format ``fmt``."""
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            timestamper,
            *processors(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping().get(level.upper(), 20)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, add_trace_ids, structlog.processors.add_log_level,
                           timestamper],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *processors(fmt)],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_paypost", False)]:
        root.removeHandler(old)
    handler._paypost = True  # type: ignore[attr-defined]  # ours, replaced when configured again
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)

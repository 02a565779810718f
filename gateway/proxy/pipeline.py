"""The one pipeline every /v1 request goes through, whatever its wire format:

    authenticate -> parse (dialect) -> resolve the model -> screening (input)
      -> admission (rate limits + budget hold) -> routing (retries, fallbacks)
      -> the answer, or the stream relayed item by item (dialect: encode, screen output)
      -> settlement (admission released to what was used) -> the frozen record to the log
         writer and telemetry

`serve()` runs it for one request with one dialect (gateway/proxy/dialects): it gives the request
an id and an `Exchange`, turns every failure into the dialect's error response, and makes sure
the record is written and the admission settled however the request ends (answered, refused,
failed upstream, cancelled by a client that went away). A stream's relay does that at its own end.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable

from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase

from gateway import scrub, telemetry
from gateway.proxy import catalog, router
from gateway.proxy import request as parse
from gateway.proxy.dialects import Call, Dialect, Opened, StreamEncoder
from gateway.proxy.errors import InternalError, ProxyError, UnreadableAnswer
from gateway.proxy.exchange import Exchange, in_background
from gateway.proxy.router import Routed
from gateway.proxy.sse import LastPiece
from gateway.proxy.stages.admission import Admission
from gateway.proxy.stages.screening import Screening
from gateway.proxy.stages.usage import openai_usage

logger = logging.getLogger("gateway.proxy")


Run = Callable[[HttpRequest, Dialect, Exchange], Awaitable[HttpResponseBase]]


async def serve(request: HttpRequest, dialect: Dialect, run: Run | None = None) -> HttpResponseBase:
    """The response to one request (see the module's docstring); `run` replaces the pipeline's
    stages for the endpoints that only read (the model list)."""
    presented = parse.presented_key(request) or ""
    exchange = Exchange(
        parse.new_request_id(),
        request.path.removeprefix("/v1/")[:40],
        method=request.method or "POST",
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        traceparent=request.META.get("HTTP_TRACEPARENT"),
        presented=presented,
    )
    request.exchange = exchange  # type: ignore[attr-defined]  # the handler scrubs with a valid key
    telemetry.request_id.set(exchange.request_id)  # for the log lines of this request (JSON logs)
    try:
        response = await (run or _run)(request, dialect, exchange)
    except ProxyError as exc:
        exchange.failed(exc.status, exc.code)
        if exchange.usage is None and isinstance(exc, UnreadableAnswer):
            exchange.usage = openai_usage(exc.usage)  # answered and billed, though not passed on
        await exchange.release()
        return _with_limits(request, dialect.error_response(exc, exchange.request_id), exchange)
    except asyncio.CancelledError:  # the client went away (or the server is stopping)
        if not exchange.error_code:
            exchange.failed(499, "client_disconnected")
        exchange.finish()  # the record first: what the upstream may bill is never lost
        in_background(exchange.release())
        raise
    except Exception as exc:
        # No traceback text: it can carry values. Where it happened is enough to find it.
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        logger.error(
            "unexpected %s at %s:%s (request %s)", type(exc).__name__, frame.filename, frame.lineno, exchange.request_id
        )
        error = InternalError("The gateway failed unexpectedly; the request id identifies it.")
        exchange.failed(error.status, error.code)
        await exchange.release()
        return dialect.error_response(error, exchange.request_id)
    _with_limits(request, response, exchange)
    if not isinstance(response, StreamingHttpResponse):  # a stream's relay settles at its end
        await exchange.release()
    return response


def _with_limits(request: HttpRequest, response: HttpResponseBase, exchange: Exchange) -> HttpResponseBase:
    """The x-ratelimit-* headers of the limits that apply, unless the response has its own (a
    refusal's). The lean handler takes them as they are (`extra_headers`, added when it writes
    the head) instead of through Django's header validation: they are digits and durations."""
    headers = exchange.limit_headers()
    if not headers:
        return response
    extra = getattr(request, "extra_headers", None)
    if extra is not None:
        extra.update(headers)
        return response
    for name, value in headers.items():
        response.setdefault(name, value)
    return response


async def _run(request: HttpRequest, dialect: Dialect, exchange: Exchange) -> HttpResponseBase:
    exchange.key = key = await catalog.authenticate(exchange.presented or None)
    call = dialect.parse(request, key, exchange)
    model = await catalog.resolve(key, call.model)
    exchange.screening = screening = Screening(key)
    await dialect.screen(call, screening)
    exchange.prompt(call.prompt_source, call.body)
    exchange.admission = admission = Admission(key, exchange.request_id)
    await admission.admit(
        call.body,
        stream=call.stream,
        model=model,
        output=call.output,
        prompt=call.prompt,
        prompt_estimate=exchange.prompt_estimate,
        choices=call.choices,
        extra_output=call.extra_output,
        output_field=call.output_field,
    )
    exchange.routed = routed = Routed()
    if not call.stream:
        return await dialect.answer(call, key, model, routed, exchange)
    opened = await dialect.open(call, key, model, routed)
    opened.rest = router.idle_guarded(opened.rest, routed.deployment)  # type: ignore[arg-type]
    return _stream_response(dialect, call, opened, exchange, public_name=routed.model.name)  # type: ignore[union-attr]


def _stream_response(
    dialect: Dialect, call: Call, opened: Opened, exchange: Exchange, *, public_name: str
) -> StreamingHttpResponse:
    secrets = scrub.current().plus(exchange.presented or None)
    encoder = dialect.encoder(call, opened, exchange, public_name, secrets)
    response = StreamingHttpResponse(_relay(opened, encoder, exchange, secrets), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in dialect.stream_headers(opened).items():
        response[name] = value
    return dialect.identify(response, exchange.request_id)


def _more_now(upstream: object) -> bool:
    """Whether the upstream's next items are here already (received in the same read, or its
    whole answer received), so that taking them costs no wait: they go out with these, in one write."""
    return bool(getattr(upstream, "buffered", 0)) or bool(getattr(upstream, "complete", False))


async def _relay(
    opened: Opened, encoder: StreamEncoder, exchange: Exchange, secrets: scrub.Secrets
) -> AsyncIterator[bytes]:
    """Pass the upstream's items on one by one, as they arrive, metering and screening as they
    pass (the dialect's encoder); every write scrubbed of the known `secrets`.

    Items already received and waiting (the upstream sent several in one read) go out together, in
    one write. A client that disconnects cancels this generator (Django cancels the response
    task), and `finally` drops the upstream connection. An upstream that fails mid-stream ends the
    client's stream with the dialect's error event. Either way the record is written, with the
    usage the upstream reported or, failing that, an estimate of what it produced.
    """
    upstream = opened.upstream
    finished = False
    waiting: list[bytes] = []
    try:
        if data := encoder.encode(opened.first):
            waiting.append(data)
        if waiting and not _more_now(upstream):
            yield secrets.bytes(b"".join(waiting))
            waiting.clear()
        async for item in opened.rest:
            if data := encoder.encode(item):
                waiting.append(data)
            if waiting and not _more_now(upstream):
                # Nothing else has arrived: send what has, in one write.
                yield secrets.bytes(b"".join(waiting))
                waiting.clear()
        waiting.append(encoder.tail())
        finished = True
        yield LastPiece(secrets.bytes(b"".join(waiting)))
    except ProxyError as exc:
        exchange.failed(exc.status, exc.code)
        yield LastPiece(secrets.bytes(b"".join(waiting) + encoder.error(exc)))
    finally:
        if not finished and not exchange.error_code:
            exchange.failed(499, "client_disconnected")
        exchange.finish()  # the record first, before anything that awaits (and could be cancelled)
        await upstream.aclose()
        await exchange.release()

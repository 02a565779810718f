"""How many writes a stream costs: what has arrived together goes out together.

The relay sends an item as soon as nothing else is waiting, so a slow upstream's chunks reach the
client one by one; items received in one read, or once the upstream's whole answer is in, go out
in one write. The last piece carries the end of the response (`more_body: False`) itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse

from gateway import scrub
from gateway.proxy.dialects import Opened
from gateway.proxy.handler import _send_response
from gateway.proxy.pipeline import _relay
from gateway.proxy.sse import LastPiece


class _Upstream:
    def __init__(self, *, complete: bool) -> None:
        self.complete = complete
        self.buffered = 0
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class _Encoder:
    def encode(self, item: dict[str, Any]) -> bytes:
        return f"data: {item['n']}\n\n".encode()

    def tail(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, exc: Exception) -> bytes:
        return b"event: error\n\n"


class _Exchange:
    error_code = ""

    def __init__(self) -> None:
        self.finished = self.released = False

    def failed(self, status: int, code: str) -> None:
        self.error_code = code

    def finish(self) -> None:
        self.finished = True

    async def release(self) -> None:
        self.released = True


async def _items(n: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(1, n):
        yield {"n": i}


def _relayed(*, complete: bool, n: int = 4) -> tuple[list[bytes], _Upstream, _Exchange]:
    upstream, exchange = _Upstream(complete=complete), _Exchange()
    opened = Opened(first={"n": 0}, rest=_items(n), upstream=upstream)  # type: ignore[arg-type]

    async def collect() -> list[bytes]:
        return [piece async for piece in _relay(opened, _Encoder(), exchange, scrub.Secrets([]))]  # type: ignore[arg-type]

    return asyncio.run(collect()), upstream, exchange


def test_a_trickling_upstream_is_relayed_item_by_item_and_the_end_rides_on_the_last_piece() -> None:
    pieces, upstream, exchange = _relayed(complete=False)

    assert pieces == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b"data: [DONE]\n\n"]
    assert [type(p) is LastPiece for p in pieces] == [False] * 4 + [True]
    assert upstream.closed and exchange.finished and exchange.released and not exchange.error_code


def test_an_answer_received_whole_goes_out_in_one_piece() -> None:
    pieces, _upstream, exchange = _relayed(complete=True)

    assert pieces == [b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n"]
    assert type(pieces[0]) is LastPiece
    assert exchange.finished and not exchange.error_code


def test_the_handler_sends_the_last_piece_as_the_end_of_the_response() -> None:
    async def relay() -> AsyncIterator[bytes]:
        yield b"data: 0\n\n"
        yield LastPiece(b"data: [DONE]\n\n")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(_send_response(StreamingHttpResponse(relay(), content_type="text/event-stream"), send))

    bodies = [(m["body"], m["more_body"]) for m in sent if m["type"] == "http.response.body"]
    assert bodies == [(b"data: 0\n\n", True), (b"data: [DONE]\n\n", False)]
    assert all(type(m["body"]) is bytes for m in sent if m["type"] == "http.response.body")

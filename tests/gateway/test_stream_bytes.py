"""The byte-level stream path (gateway/proxy/dialects/openai_chat.py, ChunkEncoder): the common
chunk goes out as the upstream's own bytes with only the model renamed, and whatever is not
certain is encoded again; either way the client receives the same events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway import scrub
from gateway.proxy.adapters.openai import _chunk
from gateway.proxy.dialects.openai_chat import ChunkEncoder
from gateway.proxy.errors import UpstreamError
from gateway.proxy.exchange import Exchange

KEY = "sk-sym-" + "k" * 40


class Upstream:
    """What OpenAIStream offers the encoder: the chunk last yielded, with its bytes."""

    last: tuple[dict, bytes] | None = None


def _encoder(
    *, upstream: Upstream | None, wants_usage: bool = False, secrets: scrub.Secrets | None = None
) -> ChunkEncoder:
    return ChunkEncoder(
        Exchange("req", "chat/completions"),
        secrets=secrets if secrets is not None else scrub.Secrets([KEY]),
        public_name="public-model",
        wants_usage=wants_usage,
        template={},
        upstream=upstream,
    )


def _relay(raw: list[bytes], *, fast: bool, **kwargs: Any) -> tuple[list[bytes | None], ChunkEncoder]:
    upstream = Upstream()
    encoder = _encoder(upstream=upstream if fast else None, **kwargs)
    out = []
    for data in raw:
        chunk = _chunk(data)
        upstream.last = (chunk, data)
        out.append(encoder.encode(chunk))
    out.append(encoder.tail())
    return out, encoder


def _content(text: str, **extra: Any) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-upstream-2024",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        "usage": None,
    }
    return orjson.dumps(chunk | extra)


def _finish_and_usage() -> list[bytes]:
    finish = orjson.loads(_content(""))
    finish["choices"][0] = {"index": 0, "delta": {}, "finish_reason": "stop"}
    usage = orjson.loads(_content(""))
    usage["choices"], usage["usage"] = [], {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    return [orjson.dumps(finish), orjson.dumps(usage)]


STREAMS = {
    "plain": [_content("Hello "), _content('wörld \u2028 "quoted" \\ ')],
    "two model fields": [_content("a", extra={"model": "gpt-upstream-2024"})],
    "spaced json": [b'{"id": "c", "model": "gpt-upstream-2024", "choices": [{"index": 0, "delta": {"content": "x"}}]}'],
    "carriage return": [
        b'{"id":"c",\r"model":"gpt-upstream-2024","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}'
    ],
    "unknown field": [_content("x", vendor={"deep": [1, 2]})],
    "no usage field": [b'{"id":"c","model":"gpt-upstream-2024","choices":[{"index":0,"delta":{"content":"x"}}]}'],
    "role and content": [
        b'{"id":"c","model":"gpt-upstream-2024","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}'
    ],
    "text containing the pattern": [_content('"model":"gpt-upstream-2024" ,"usage":null')],
}


@pytest.mark.parametrize("wants_usage", [False, True])
@pytest.mark.parametrize("name", list(STREAMS))
def test_the_byte_level_path_sends_what_encoding_would(name: str, wants_usage: bool) -> None:
    raw = [*STREAMS[name], *_finish_and_usage()]
    fast, fast_encoder = _relay(raw, fast=True, wants_usage=wants_usage)
    slow, slow_encoder = _relay(raw, fast=False, wants_usage=wants_usage)
    assert [orjson.loads(e[6:]) if e and e.startswith(b"data: {") else e for e in fast] == [
        orjson.loads(e[6:]) if e and e.startswith(b"data: {") else e for e in slow
    ]
    assert fast_encoder.exchange.output == slow_encoder.exchange.output
    assert fast_encoder.exchange.usage == slow_encoder.exchange.usage
    for event in filter(None, fast):
        assert b"\r" not in event
        if event.startswith(b"data: {"):
            assert orjson.loads(event[6:])["model"] == "public-model"


def test_the_common_chunk_is_passed_on_as_the_upstreams_bytes() -> None:
    # An escape orjson would write otherwise: the bytes sent are the upstream's, not re-encoded.
    data = _content("caf\u00e9 ").replace("é".encode(), b"\\u00e9")
    assert b"\\u00e9" in data
    out, _ = _relay([data], fast=True)
    assert (
        out[0]
        == b"data: " + data.replace(b'"gpt-upstream-2024"', b'"public-model"').replace(b',"usage":null', b"") + b"\n\n"
    )


def test_a_secret_split_across_chunks_is_still_redacted_on_the_byte_level_path() -> None:
    pieces = [KEY[i : i + 5] for i in range(0, len(KEY), 5)]
    raw = [_content("before "), *(_content(p) for p in pieces), _content(" after"), *_finish_and_usage()]
    out, _ = _relay(raw, fast=True)
    text = "".join(
        (orjson.loads(e[6:])["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
        for e in out
        if e and e.startswith(b"data: {")
    )
    assert KEY not in text and "before " in text and " after" in text
    assert scrub.REDACTED in text


def test_a_malformed_or_error_event_still_fails_the_stream() -> None:
    with pytest.raises(UpstreamError):
        _chunk(b'{"id":"c","model":"gpt-upstream-2024","choices":[')
    with pytest.raises(UpstreamError):
        _chunk(b'{"error":{"message":"overloaded"}}')

"""Server-Sent Events: split an upstream byte stream into `data:` payloads."""

from __future__ import annotations

from collections.abc import AsyncIterator


class SSEProtocolError(Exception):
    pass


class LastPiece(bytes):
    """The last piece of a streamed response body: the handler sends it with `more_body: False`,
    the end of the response in the same write instead of one more."""


async def data_payloads(chunks: AsyncIterator[bytes], *, max_event_bytes: int) -> AsyncIterator[bytes]:
    """Yield each event's data (multi-line data joined with newlines); comments and other fields are skipped."""
    async for batch in data_batches(chunks, max_event_bytes=max_event_bytes):
        for data in batch:
            yield data


async def data_batches(chunks: AsyncIterator[bytes], *, max_event_bytes: int) -> AsyncIterator[list[bytes]]:
    """Like data_payloads, but the events completed by one upstream read come together, so a relay
    can pass on in one write what arrived in one read."""
    buffer = b""
    data: list[bytes] = []
    async for chunk in chunks:
        batch: list[bytes] = []
        buffer += chunk
        if len(buffer) > max_event_bytes:
            raise SSEProtocolError("an upstream event exceeded the size limit")
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            line = buffer[:newline].rstrip(b"\r")
            buffer = buffer[newline + 1 :]
            if not line:
                if data:
                    batch.append(b"\n".join(data))
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # "event:", "id:", "retry:" and ":" comments carry nothing the OpenAI wire format needs
        if batch:
            yield batch
    tail = buffer.rstrip(b"\r")
    if tail.startswith(b"data:"):
        value = tail[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield [b"\n".join(data)]

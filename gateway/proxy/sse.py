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
    can pass on in one write what arrived in one read.

    Lines end with LF (a CR before it is dropped); each read is split into lines once, and only an
    unfinished last line is kept for the next read."""
    pending = b""  # the unfinished last line of what was read so far
    data: list[bytes] = []
    async for chunk in chunks:
        buffer = pending + chunk if pending else chunk
        if len(buffer) > max_event_bytes:
            raise SSEProtocolError("an upstream event exceeded the size limit")
        lines = buffer.split(b"\n")
        pending = lines.pop()
        batch: list[bytes] = []
        for line in lines:
            if line[-1:] == b"\r":
                line = line.rstrip(b"\r")
            if not line:
                if data:
                    batch.append(b"\n".join(data))
                    data = []
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            # "event:", "id:", "retry:" and ":" comments carry nothing the OpenAI wire format needs
        if batch:
            yield batch
    tail = pending.rstrip(b"\r")
    if tail.startswith(b"data:"):
        value = tail[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield [b"\n".join(data)]

"""The per-request disconnect watch leaves no reference cycle behind.

Every request the proxy serves starts a task that waits for its client to disconnect and is
cancelled when the request ends. A cancelled task keeps its CancelledError, whose traceback holds
the watching coroutine's frame: were the watch still holding the tasks, each request would leave
uvicorn's request cycle and its transport in a cycle only a full collection frees (a thousand slow
streams grew a worker by megabytes per round). Refcounting alone must free it all.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from gateway.proxy.handler import _Watch


class _Connection:
    """Stands for uvicorn's request cycle: `receive` waits until the client goes away."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def _serve_one(*, client_leaves: bool) -> None:
    connection = _Connection()

    async def request() -> None:
        watch = _Watch(connection.receive, asyncio.current_task())  # type: ignore[arg-type]
        try:
            await asyncio.sleep(0.01 if client_leaves else 0)
        except asyncio.CancelledError:
            assert watch.left
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            watch.stop()

    task = asyncio.get_running_loop().create_task(request())
    if client_leaves:
        await asyncio.sleep(0)
        connection.gone.set()
    await task
    for _ in range(3):  # the watching task runs its cancellation
        await asyncio.sleep(0)


def _cyclic_garbage_after(client_leaves: bool) -> list[str]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        asyncio.run(_serve_one(client_leaves=client_leaves))
        gc.collect()
        return [type(o).__name__ for o in gc.garbage if isinstance(o, (_Watch, _Connection, asyncio.Task))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_request_that_ends_normally_leaves_no_cycle() -> None:
    assert _cyclic_garbage_after(client_leaves=False) == []


def test_a_request_whose_client_left_leaves_no_cycle() -> None:
    assert _cyclic_garbage_after(client_leaves=True) == []

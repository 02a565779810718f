"""The gunicorn worker that serves the gateway: uvicorn's, stopping in time to keep its log rows.

On SIGTERM gunicorn gives a worker `--graceful-timeout` seconds and then kills it (SIGKILL). Uvicorn
by itself waits for every open connection without limit, so a stream longer than that (an agent's
minutes-long answer) gets the worker killed: every request still running and every request-log
row and ledger debit still buffered would be lost. This worker cancels what still runs shortly
before gunicorn's deadline (each request then hands its row over, with what it used), leaving the
rest of the time for the final flush of the log buffer.
"""

from __future__ import annotations

from typing import Any

from uvicorn.workers import UvicornWorker as _UvicornWorker

FLUSH_SECONDS = 5.0  # kept for the last flush of the log buffer (it retries for about 3 s)


class UvicornWorker(_UvicornWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        graceful = float(self.cfg.graceful_timeout)
        self.config.timeout_graceful_shutdown = max(graceful - FLUSH_SECONDS, graceful / 2)

"""A round-robin TCP balancer in front of several gateway instances, as a load balancer is.

Each client connection goes to the next instance in turn; an instance that refuses the connection
(stopped, or stopping: gunicorn closes its listener on SIGTERM) is skipped, as a load balancer's
health check would take it out. Bytes are piped as they come; nothing is retried once sent.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections import Counter

from tests.bench.procs import free_port


class RoundRobin:
    def __init__(self, target_ports: list[int]) -> None:
        self.targets = target_ports
        self.port = free_port()
        self.served: Counter[int] = Counter()  # connections per target port
        self._turn = itertools.cycle(range(len(target_ports)))
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=256)
        threading.Thread(target=self._accept, daemon=True, name="round-robin").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        with self._lock:
            first = next(self._turn)
        for step in range(len(self.targets)):
            port = self.targets[(first + step) % len(self.targets)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue  # down or stopping: the next one
            upstream.settimeout(None)
            with self._lock:
                self.served[port] += 1
            return upstream
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            client.close()  # no instance left: the client sees its connection refused
            return
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._listener.close()

"""A loopback TCP proxy between a store and the test PostgreSQL server, to make the
network fail on purpose: `cut()` drops every connection and refuses new ones (the
server is unreachable), `restore()` accepts again, `go_silent()` stops passing bytes
without closing anything (a network partition: nothing answers, nothing fails) until
`speak()`, and `drop_on_commit` drops a connection the moment a COMMIT passes through
it, before the server sees it (the client cannot know whether its transaction landed).

It runs on its own thread with its own event loop: the stores under test do their
blocking network I/O on worker threads, and the test's loop stays free to await them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from tests.pg_server import free_port

# A simple-protocol Query message carrying COMMIT: 'Q', a 4-byte length, the text, NUL.
_COMMIT = b"COMMIT\x00"


class PgProxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target_host = parts.hostname or "127.0.0.1"
        self.target_port = parts.port or 5432
        self.port = free_port()
        self.url = urlunsplit(
            (parts.scheme, f"{parts.username}@127.0.0.1:{self.port}", parts.path, "", "")
        )
        self.drop_on_commit = False
        self._flowing = asyncio.Event()  # clear while silent; the proxy's loop waits on it
        self._flowing.set()
        self.commits_dropped = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._do(self._listen())

    def cut(self) -> None:
        self._do(self._cut())

    def restore(self) -> None:
        self._do(self._listen())

    def go_silent(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def speak(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stop(self) -> None:
        self.speak()
        self._do(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _do(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, client=writer, watch=True),
            self._pipe(up_reader, writer, client=writer, watch=False),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        *, client: asyncio.StreamWriter, watch: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if watch and self.drop_on_commit and _COMMIT in data:
                    self.commits_dropped += 1
                    client.transport.abort()  # the client's COMMIT never arrives
                    writer.transport.abort()
                    return
                await self._flowing.wait()  # a partition: hold the bytes, close nothing
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@contextlib.contextmanager
def proxied(url: str) -> Iterator[PgProxy]:
    proxy = PgProxy(url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()

"""keybroker.aio: the asyncio client, AsyncClient.

The same operations as Client, as coroutines. Each connection has one reader
task that hands every answer to the request carrying its id, so any number of
tasks pipeline their requests on it; a connection is added to the small pool
only when every open one has requests in flight. A task cancelled while its
request is in flight stops waiting at once; the broker's late answer is
skipped and the connection stays usable.
"""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

from . import ops
from .errors import IoError, KeybrokerError
from .ops import Blob, DataKey, Op, Rotated, RewrapItem, Unwrapped, UnwrapItem, Wrapped
from .wire import Pending, Settings, closed_error, connect_error, pick


class _Resend(Exception):
    """The broker closed an idle connection before reading the request: send it again."""


class _AConn:
    def __init__(self, path: str) -> None:
        self.path = path
        self.pending = Pending(path, self._settle)
        self.closed = False
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.task: asyncio.Task[None]

    @classmethod
    async def open(cls, path: str) -> "_AConn":
        c = cls(path)
        try:
            c.reader, c.writer = await asyncio.open_unix_connection(path)
        except OSError as e:
            raise connect_error(path, e) from None
        c.task = asyncio.get_running_loop().create_task(c._read())
        return c

    @staticmethod
    def _settle(fut: "asyncio.Future[Any]", value: Any) -> None:
        if fut.done():
            return
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)

    def load(self) -> int:
        return len(self.pending.waiting)

    async def _read(self) -> None:
        err: KeybrokerError = closed_error(self.path)
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                self.pending.feed(data)
        except KeybrokerError as e:        # an unreadable answer: the stream is out of step
            err = e
        except OSError as e:
            err = IoError("reading %s: %s" % (self.path, e))
        self._end(err)

    def _end(self, err: KeybrokerError) -> None:
        self.closed = True
        for fut in self.pending.fail_all(err, may_resend=True):
            self._settle(fut, _Resend())
        self.writer.close()

    async def call(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise _Resend()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.writer.write(self.pending.encode(req, fut))
        try:
            if self.writer.transport.get_write_buffer_size() > 1 << 20:
                await self.writer.drain()
            return await fut
        except asyncio.CancelledError:
            self.pending.forget(fut)
            raise
        except (ConnectionError, OSError) as e:
            self.pending.forget(fut)
            raise IoError("cannot write to %s: %s" % (self.path, e)) from None

    async def close(self) -> None:
        self.task.cancel()
        self._end(IoError("the client was closed"))
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class AsyncClient(Settings):
    """An asyncio client of keybrokerd; open it with ``await AsyncClient.connect()``
    or ``async with AsyncClient() as kb``. The arguments are those of Client;
    timeout bounds each call (asyncio.wait_for), None waits forever."""

    def __init__(self, socket: str | None = None, *, pool_size: int = 4, timeout: float | None = None,
                 max_batch: int = ops.BATCH_ITEMS, max_request_bytes: int = ops.BATCH_BYTES) -> None:
        super().__init__(socket, pool_size, timeout, max_batch, max_request_bytes)
        self._conns: list[_AConn] = []
        self._opening: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    async def connect(cls, socket: str | None = None, **kw: Any) -> "AsyncClient":
        c = cls(socket, **kw)
        c._conns.append(await _AConn.open(c.socket))     # fail early, as Client does
        return c

    async def __aenter__(self) -> "AsyncClient":
        if not self._conns:
            self._conns.append(await _AConn.open(self.socket))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes every connection; calls in flight fail with IoError."""
        self._closed = True
        conns, self._conns = self._conns, []
        for c in conns:
            await c.close()

    async def _pick(self) -> _AConn:
        if self._closed:
            raise IoError("the client was closed")
        self._conns = [c for c in self._conns if not c.closed]
        best = pick(self._conns, self.pool_size)
        if best is not None:
            return best
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:       # one opens while the others wait for it
            self._conns = [c for c in self._conns if not c.closed]
            best = pick(self._conns, self.pool_size)
            if best is not None:
                return best
            conn = await _AConn.open(self.socket)
            self._conns.append(conn)
            return conn

    async def _roundtrip(self, req: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(2):
            try:
                return await (await self._pick()).call(req)
            except _Resend:
                if attempt == 1:
                    break
        raise closed_error(self.socket)

    async def _run(self, op: Op) -> Any:
        try:
            req = next(op)
            while True:
                try:
                    if self.timeout is None:
                        resp = await self._roundtrip(req)
                    else:
                        resp = await asyncio.wait_for(self._roundtrip(req), self.timeout)
                except asyncio.TimeoutError:
                    req = op.throw(IoError("no answer from keybrokerd on %s within %s s" %
                                           (self.socket, self.timeout)))
                except KeybrokerError as e:
                    req = op.throw(e)
                else:
                    req = op.send(resp)
        except StopIteration as done:
            return done.value

    # The operations: docs in client/python/README.md.
    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._run(ops.call(request))

    async def status(self) -> dict[str, Any]:
        return await self._run(ops.status())

    async def get(self, key: str) -> dict[str, Any]:
        return await self._run(ops.get(key))

    async def wrap(self, key: str, plaintext: bytes, alg: str | None = None) -> Wrapped:
        return await self._run(ops.wrap(key, plaintext, alg))

    async def unwrap(self, blob: Blob) -> Unwrapped:
        return await self._run(ops.unwrap(blob))

    async def datakey(self, key: str, bits: int = 256, nbytes: int | None = None) -> DataKey:
        return await self._run(ops.datakey(key, bits, nbytes))

    async def rewrap(self, blob: Blob, key: str | None = None) -> Wrapped:
        return await self._run(ops.rewrap(blob, key))

    async def rotate(self, key: str) -> Rotated:
        return await self._run(ops.rotate(key))

    async def flush(self, key: str | None = None) -> int:
        return await self._run(ops.flush(key))

    async def metrics(self) -> str:
        return await self._run(ops.metrics())

    async def unwrap_many(self, blobs: Sequence[Blob]) -> list[UnwrapItem]:
        return await self._run(ops.unwrap_many(blobs, self.max_batch, self.max_request_bytes))

    async def rewrap_many(self, blobs: Sequence[Blob], key: str | None = None) -> list[RewrapItem]:
        return await self._run(ops.rewrap_many(blobs, key, self.max_batch, self.max_request_bytes))

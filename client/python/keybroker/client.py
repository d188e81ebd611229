"""keybroker.client: the blocking client, Client.

A Client holds a small pool of connections to keybrokerd. It is safe to share
between threads: calls from many threads are pipelined on a connection
(each waits for the answer carrying its id, in any order), and a connection
is added to the pool only when every open one has requests in flight. The
thread that waits reads the socket itself and hands other threads their
answers, so a single-threaded caller pays for no thread switch.
"""
from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any, Sequence

from . import ops
from .errors import IoError, KeybrokerError
from .ops import Blob, DataKey, Op, Rotated, RewrapItem, Unwrapped, UnwrapItem, Wrapped
from .wire import Pending, Settings, closed_error, connect_error, pick


class _Resend(Exception):
    """The broker closed an idle connection before reading the request: send it again."""


class _Call:
    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None


class _Conn:
    """One connection; its state is guarded by cv, its writes by wlock."""

    def __init__(self, path: str, timeout: float | None) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise connect_error(path, e) from None
        self.cv = threading.Condition()
        self.wlock = threading.Lock()
        self.reading = False
        self.closed = False
        self.pending = Pending(path, self._settle)

    def _settle(self, call: _Call, value: Any) -> None:
        call.value = value
        call.done = True

    def load(self) -> int:
        return len(self.pending.waiting)

    def ended(self) -> bool:
        """True when the broker has closed this connection (idle_timeout),
        seen without blocking: nothing is owed on it, so nothing is lost."""
        if self.closed:
            return True
        if self.pending.waiting or self.reading:
            return False
        try:
            data = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return not data

    def call(self, req: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        call = _Call()
        with self.cv:
            if self.closed:
                raise _Resend()
            line = self.pending.encode(req, call)
        try:
            with self.wlock:
                self.sock.sendall(line)
        except OSError as e:
            # a broker gone since: what it read of this connection it answered already
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                self._end(IoError("cannot write to %s: %s" % (self.path, e)))
        while True:
            with self.cv:
                while not call.done and self.reading:
                    if not self._wait(call, deadline):
                        self.pending.forget(call)
                        raise _timeout(self.path)
                if call.done:
                    break
                self.reading = True
            data, err = b"", None
            try:
                if deadline is not None:
                    self.sock.settimeout(max(0.0, deadline - time.monotonic()))
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                with self.cv:
                    self.reading = False
                    self.pending.forget(call)
                    self.cv.notify_all()
                raise _timeout(self.path) from None
            except OSError as e:
                err = e
            with self.cv:
                self.reading = False
                try:
                    if data:
                        self.pending.feed(data)
                    else:
                        self._end_locked(IoError("reading %s: %s" % (self.path, err)) if err
                                         else closed_error(self.path))
                except KeybrokerError as e:   # an unreadable answer: the stream is out of step
                    self._end_locked(e)
                self.cv.notify_all()
        if isinstance(call.value, BaseException):
            raise call.value
        return call.value

    def _end(self, err: KeybrokerError) -> None:
        with self.cv:
            self._end_locked(err)
            self.cv.notify_all()

    def _end_locked(self, err: KeybrokerError) -> None:
        self.closed = True
        for call in self.pending.fail_all(err, may_resend=True):
            self._settle(call, _Resend())
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        self._end(IoError("the client was closed"))

    def _wait(self, call: _Call, deadline: float | None) -> bool:
        """Waits (cv held) for another thread's read; False once the deadline passed."""
        if deadline is None:
            self.cv.wait()
            return True
        left = deadline - time.monotonic()
        return left > 0 and (self.cv.wait(left) or call.done or time.monotonic() < deadline)


def _timeout(path: str) -> IoError:
    return IoError("no answer from keybrokerd on %s within the timeout" % path)


class Client(Settings):
    """A blocking client of keybrokerd.

    socket: the broker's socket path (default: default_socket()).
    pool_size: the most connections it opens (one per thread with a call in flight, at most).
    timeout: seconds a call may wait for its answer (None: forever).
    max_batch, max_request_bytes: the broker's limits; unwrap_many and
    rewrap_many split batches to fit them, and further when refused too_large.
    """

    def __init__(self, socket: str | None = None, *, pool_size: int = 4, timeout: float | None = None,
                 max_batch: int = ops.BATCH_ITEMS, max_request_bytes: int = ops.BATCH_BYTES) -> None:
        super().__init__(socket, pool_size, timeout, max_batch, max_request_bytes)
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._closed = False
        self._put(_Conn(self.socket, timeout))   # fail early, as kb_client_connect does

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes every connection; calls in flight fail with IoError."""
        with self._lock:
            conns, self._conns, self._closed = self._conns, [], True
        for c in conns:
            c.close()

    def _put(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.append(conn)

    def _pick(self) -> _Conn:
        with self._lock:
            if self._closed:
                raise IoError("the client was closed")
            self._conns = [c for c in self._conns if not c.ended()]
            best = pick(self._conns, self.pool_size)
            if best is not None:
                return best
        conn = _Conn(self.socket, self.timeout)
        self._put(conn)
        return conn

    def _roundtrip(self, req: dict[str, Any]) -> dict[str, Any]:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        for attempt in range(2):
            try:
                return self._pick().call(req, deadline)
            except _Resend:
                if attempt == 1:
                    break
        raise closed_error(self.socket)

    def _run(self, op: Op) -> Any:
        try:
            req = next(op)
            while True:
                try:
                    resp = self._roundtrip(req)
                except KeybrokerError as e:
                    req = op.throw(e)
                else:
                    req = op.send(resp)
        except StopIteration as done:
            return done.value

    # The operations: docs in client/python/README.md.
    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._run(ops.call(request))

    def status(self) -> dict[str, Any]:
        return self._run(ops.status())

    def get(self, key: str) -> dict[str, Any]:
        return self._run(ops.get(key))

    def wrap(self, key: str, plaintext: bytes, alg: str | None = None) -> Wrapped:
        return self._run(ops.wrap(key, plaintext, alg))

    def unwrap(self, blob: Blob) -> Unwrapped:
        return self._run(ops.unwrap(blob))

    def datakey(self, key: str, bits: int = 256, nbytes: int | None = None) -> DataKey:
        return self._run(ops.datakey(key, bits, nbytes))

    def rewrap(self, blob: Blob, key: str | None = None) -> Wrapped:
        return self._run(ops.rewrap(blob, key))

    def rotate(self, key: str) -> Rotated:
        return self._run(ops.rotate(key))

    def flush(self, key: str | None = None) -> int:
        return self._run(ops.flush(key))

    def metrics(self) -> str:
        return self._run(ops.metrics())

    def unwrap_many(self, blobs: Sequence[Blob]) -> list[UnwrapItem]:
        return self._run(ops.unwrap_many(blobs, self.max_batch, self.max_request_bytes))

    def rewrap_many(self, blobs: Sequence[Blob], key: str | None = None) -> list[RewrapItem]:
        return self._run(ops.rewrap_many(blobs, key, self.max_batch, self.max_request_bytes))

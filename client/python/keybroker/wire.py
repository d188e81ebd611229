"""keybroker.wire: where the broker listens, and one connection's bookkeeping.

Pipelining: every request gets the next id of its connection and waits in
Pending until the line carrying that id comes back, in any order. Shared by
the blocking and the asyncio client; neither touches the socket here.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from .errors import IoError, KeybrokerError, ProtocolError, from_wire

SOCKET_ENV = "KEYBROKER_SOCKET"
FALLBACK_SOCKET = "/run/keybroker/keybroker.sock"
MAX_RESPONSE = 1024 * 1024      # as libkeybroker's KB_MAX_RESPONSE

# ops the client may send again when the broker closed an idle connection
# before answering: all but rotate, which would make a second version
RESENDABLE = {"status", "get", "wrap", "unwrap", "datakey", "rewrap", "flush", "metrics"}


def default_socket() -> str:
    """$KEYBROKER_SOCKET if set and non-empty, else $XDG_RUNTIME_DIR/keybroker.sock,
    else /run/keybroker/keybroker.sock: the rule of libkeybroker and the CLI."""
    path = os.environ.get(SOCKET_ENV)
    if path:
        return path
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "keybroker.sock") if xdg else FALLBACK_SOCKET


def connect_error(path: str, err: OSError) -> IoError:
    hint = ""
    if isinstance(err, (FileNotFoundError, ConnectionRefusedError)):
        hint = "; is keybrokerd running? (set $%s or pass the socket path)" % SOCKET_ENV
    return IoError("cannot connect to %s: %s%s" % (path, err.strerror or err, hint))


class Pending:
    """The requests in flight on one connection, by id. ``settle`` is called
    with (token, response-or-exception) for each one answered or failed."""

    def __init__(self, path: str, settle: Callable[[Any, Any], None]) -> None:
        self.path = path
        self.settle = settle
        self.next_id = 1
        self.waiting: dict[int, tuple[Any, Any, int, bool]] = {}   # id -> (token, op, line length, resendable)
        self.buf = bytearray()
        self.answered = 0          # responses read on this connection
        self.idle_mark = 0         # answered when the oldest request in flight was sent

    def encode(self, req: dict[str, Any], token: Any) -> bytes:
        rid = self.next_id
        self.next_id += 1
        if not self.waiting:
            self.idle_mark = self.answered
        line = json.dumps(dict(req, id=rid), separators=(",", ":")).encode() + b"\n"
        self.waiting[rid] = (token, req.get("op"), len(line), req.get("op") in RESENDABLE)
        return line

    def forget(self, token: Any) -> None:
        """Drops a request whose caller went away (cancelled): its answer is skipped."""
        for rid, entry in list(self.waiting.items()):
            if entry[0] is token:
                del self.waiting[rid]

    def feed(self, data: bytes) -> None:
        """Takes bytes read from the socket and settles every complete line."""
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > MAX_RESPONSE:
                    raise ProtocolError("keybrokerd on %s sent a line over %d bytes" %
                                        (self.path, MAX_RESPONSE))
                return
            line = bytes(self.buf[:nl])
            del self.buf[:nl + 1]
            self._line(line)

    def _line(self, line: bytes) -> None:
        try:
            r = json.loads(line)
        except ValueError:
            raise ProtocolError("keybrokerd on %s sent a line that is not JSON" % self.path) from None
        if not isinstance(r, dict):
            raise ProtocolError("keybrokerd on %s sent a line that is not a JSON object" % self.path)
        self.answered += 1
        rid = r.get("id")
        if rid is None:
            # a line it could not frame (too_large: the longest in flight) or a refused
            # connection (permission_denied, busy): the broker closes after it
            if not self.waiting:
                return
            rid = max(self.waiting, key=lambda k: self.waiting[k][2])
        entry = self.waiting.pop(rid, None) if isinstance(rid, int) else None
        if entry is None:
            return        # the answer to a request its caller abandoned
        if r.get("ok") is True:
            self.settle(entry[0], r)
        elif r.get("ok") is False:
            self.settle(entry[0], from_wire(r.get("error")))
        else:
            self.settle(entry[0], ProtocolError('keybrokerd on %s sent an answer without "ok"' % self.path))

    def fail_all(self, err: KeybrokerError, may_resend: bool) -> list[Any]:
        """Fails every request still waiting; when the broker closed the
        connection without answering anything sent since it was idle (its
        idle_timeout met our request on the way), returns the tokens of those
        safe to send again instead of failing them (if may_resend)."""
        idle_close = may_resend and self.answered == self.idle_mark
        resend = []
        for _, (token, _op, _n, resendable) in sorted(self.waiting.items()):
            if idle_close and resendable:
                resend.append(token)
            else:
                self.settle(token, err)
        self.waiting.clear()
        return resend


class Settings:
    """What Client and AsyncClient are given (their docstrings say what each means)."""

    def __init__(self, socket: str | None, pool_size: int, timeout: float | None,
                 max_batch: int, max_request_bytes: int) -> None:
        self.socket = socket or default_socket()
        self.pool_size = max(1, pool_size)
        self.timeout = timeout
        self.max_batch = max_batch
        self.max_request_bytes = max_request_bytes


def pick(conns: list[Any], pool_size: int) -> Any:
    """The open connection to use next: the least loaded one if it is idle or the
    pool is full, else None (open another). Each conn has load()."""
    best = min(conns, key=lambda c: c.load(), default=None)
    if best is not None and (best.load() == 0 or len(conns) >= pool_size):
        return best
    return None


def closed_error(path: str) -> IoError:
    return IoError("keybrokerd on %s closed the connection before answering; "
                   "the request may or may not have been done" % path)

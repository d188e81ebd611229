#!/usr/bin/env python3
"""bench_unwrap.py SOCKET KEY CLIENTS SECONDS: cached unwraps through the Python
client, as `keybroker bench --op unwrap-hit` makes them with libkeybroker: CLIENTS
threads, each with its own Client (one connection) and one request in flight.
Prints one JSON line: throughput (requests/s) and p50_us. bench/compare runs it."""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keybroker import Client  # noqa: E402


def main() -> int:
    sock, key, clients, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    with Client(sock) as kb:
        blobs = [kb.wrap(key, os.urandom(32)).blob for _ in range(64)]
        for b in blobs:
            kb.unwrap(b)                      # cached from here on
    lat: list[list[float]] = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop = [0.0]

    def worker(k: int) -> None:
        c = Client(sock, pool_size=1)
        mine, i, clock = lat[k], k, time.perf_counter
        warm_end = time.monotonic() + 0.3
        while time.monotonic() < warm_end:
            c.unwrap(blobs[i % 64])
            i += 1
        start.wait()
        while True:
            t = clock()
            c.unwrap(blobs[i % 64])
            mine.append(clock() - t)
            i += 1
            if t > stop[0] > 0:
                break
        c.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    stop[0] = t0 + secs
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lat = sorted(x for m in lat for x in m)
    print(json.dumps({"client": "python", "clients": clients, "requests": len(all_lat),
                      "throughput": len(all_lat) / elapsed, "p50_us": all_lat[len(all_lat) // 2] * 1e6}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

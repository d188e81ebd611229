"""The Python client (client/python) against the real keybrokerd, on a SoftHSM
token and on the akv-emulator (kbfix). meson runs one test() per function."""
import asyncio
import os
import threading

import pytest

import kbfix
from kbtest import blob_fields, make_blob, wait_for

import keybroker
from keybroker import AsyncClient, Client, errors

DEK = bytes(range(32))


@pytest.fixture
def root(tmp_path):
    os.chmod(tmp_path, 0o700)
    yield str(tmp_path)
    kbfix.stop_all()


def run(coro):
    return asyncio.run(coro)


def every_operation(kb, key, rsa_key):
    st = kb.status()
    assert st["version"] and any(k["name"] == key for k in st["keys"])
    assert kb.get(key)["key"] == key
    w = kb.wrap(key, DEK)
    assert w.key == key and w.blob.startswith("kb2:%s:%s:" % (key, w.version))
    u = kb.unwrap(w.blob)
    assert u.plaintext == DEK and u.key == key
    assert kb.unwrap(w.blob).cached is True
    dk = kb.datakey(rsa_key, bits=128)
    assert len(dk.plaintext) == 16 and kb.unwrap(dk.blob).plaintext == dk.plaintext
    rot = kb.rotate(key)
    assert rot.key == key and rot.version != w.version
    rw = kb.rewrap(w.blob)
    assert rw.version == rot.version and kb.unwrap(rw.blob).plaintext == DEK
    assert kb.flush(key) >= 1 and kb.flush() >= 0
    assert kb.unwrap(w.blob).cached is False
    assert "keybroker_" in kb.metrics()
    many = kb.unwrap_many([w.blob, "kb1:%s:01:AES-KWP:AAAA:zzzzzzzz" % key, dk.blob])
    assert many[0].plaintext == DEK and isinstance(many[1], errors.BadBlob) and many[2].plaintext == dk.plaintext
    assert kb.unwrap_many([]) == []
    rws = kb.rewrap_many([w.blob, dk.blob], key)
    assert [r.version for r in rws] == [rot.version] * 2
    return w


def test_every_operation_softhsm(root):
    b = kbfix.softhsm(root)
    with Client(b.sock) as kb:
        every_operation(kb, "aes", "rsa")


def test_every_operation_asyncio(root):
    b = kbfix.softhsm(root)

    async def main():
        async with AsyncClient(b.sock) as kb:
            w = await kb.wrap("aes", DEK)
            assert (await kb.unwrap(w.blob)).plaintext == DEK
            dk = await kb.datakey("rsa")
            assert (await kb.unwrap(dk.blob)).plaintext == dk.plaintext
            assert (await kb.get("rsa"))["kty"] == "RSA"
            assert (await kb.status())["version"]
            rot = await kb.rotate("aes")
            assert (await kb.rewrap(w.blob)).version == rot.version
            assert await kb.flush() >= 0
            assert "keybroker_" in await kb.metrics()
            assert [r.plaintext for r in await kb.unwrap_many([w.blob, dk.blob])] == [DEK, dk.plaintext]
            assert len(await kb.rewrap_many([w.blob])) == 1
            assert (await kb.call({"op": "status"}))["version"]
    run(main())


def test_every_operation_azure_with_raw_form(root):
    b = kbfix.azure(root)
    with Client(b.sock) as kb:
        w = every_operation(kb, "hsm", "az")
        rsa = kb.wrap("az", DEK)
        f = blob_fields(rsa.blob)
        raw = {"kid": "%s/%s" % (b.emu.url("vault"), f["version"]), "alg": f["alg"],
               "value": rsa.blob.split(":")[-2]}
        assert kb.unwrap(raw).plaintext == DEK
        import json
        assert kb.unwrap(json.dumps(raw)).plaintext == DEK
        assert kb.unwrap_many([raw, w.blob])[0].plaintext == DEK


def expect(cls, fn):
    with pytest.raises(cls) as e:
        fn()
    assert isinstance(e.value, keybroker.KeybrokerError) and e.value.code == cls.code
    assert len(e.value.message) > 10, e.value.message
    return e.value


def test_error_codes_softhsm(root):
    b = kbfix.softhsm(root)
    kb = Client(b.sock)
    blob = kb.wrap("aes", DEK).blob
    expect(errors.BadRequest, lambda: kb.datakey("aes", bits=7))
    expect(errors.BadRequest, lambda: kb.wrap("aes", b""))        # ours: nothing sent
    expect(errors.UnknownOp, lambda: kb.call({"op": "frobnicate"}))
    expect(errors.TooLarge, lambda: kb.wrap("aes", b"x" * 2000))
    expect(errors.UnknownKey, lambda: kb.wrap("nope", DEK))
    expect(errors.BadBlob, lambda: kb.unwrap(blob[:-3] + "AAA"))
    f = blob_fields(blob)
    expect(errors.UnknownVersion, lambda: kb.unwrap(make_blob("aes", "7f", f["alg"], f["ct"])))
    expect(errors.MechanismUnsupported, lambda: kb.wrap("rsa", DEK, alg="RSA-OAEP-256"))
    assert kb.unwrap(blob).plaintext == DEK, "a broker error leaves the connection usable"
    kb.close()
    expect(errors.IoError, lambda: Client(os.path.join(root, "nothing.sock")))
    b.stop()
    b = kbfix.kbtest.Broker(root, b.token, broker_extra="audit_log = /dev/full\nadmin_uids = nobody\n"
                            "max_connections = 1\n")
    kb = Client(b.sock, pool_size=2)
    expect(errors.AuditUnavailable, lambda: kb.unwrap(blob))
    expect(errors.PermissionDenied, lambda: kb.rotate("aes"))
    # a second connection is over max_connections: the broker's one line answers its request
    e = expect(errors.Busy, lambda: Client(b.sock).status())
    assert "max_connections" in e.message
    kb.close()


def test_error_codes_azure(root):
    b = kbfix.azure(root, "cache_ttl = 1s\n")
    kb = Client(b.sock)
    w = kb.wrap("az", DEK)
    b.emu.admin("/admin/keys/disable", {"vault": "kv", "key": "rsa"})
    kb.flush()
    expect(errors.KeyDisabled, lambda: kb.unwrap(w.blob))
    b.emu.admin("/admin/keys/enable", {"vault": "kv", "key": "rsa"})
    path = "/keys/rsa/%s" % w.version
    import time
    b.emu.rest("PATCH", "vault", path, {"attributes": {"exp": int(time.time()) - 60}})
    kb.flush()
    expect(errors.KeyExpired, lambda: kb.unwrap(w.blob))
    b.emu.rest("PATCH", "vault", path, {"attributes": {"exp": int(time.time()) + 3600,
                                                       "nbf": int(time.time()) + 3000}})
    kb.flush()
    expect(errors.KeyNotYetValid, lambda: kb.unwrap(w.blob))
    b.emu.rest("PATCH", "vault", path, {"attributes": {"nbf": int(time.time()) - 60}})
    kb.flush()
    assert kb.unwrap(w.blob).plaintext == DEK
    b.emu.admin("/admin/permissions/revoke", {"principal": "kb-app", "vault": "kv", "key": "rsa",
                                              "permissions": ["unwrapKey"]})
    kb.flush()
    expect(errors.PermissionDenied, lambda: kb.unwrap(w.blob))
    b.emu.admin("/admin/permissions/grant", {"principal": "kb-app", "vault": "kv", "key": "rsa",
                                             "permissions": ["unwrapKey"]})
    b.emu.admin("/admin/throttle", {"vault": "kv", "limit": 1, "retry_after": True})
    kb.flush()
    try:
        kb.unwrap(w.blob)    # spends the window's one request
    except keybroker.KeybrokerError:
        pass
    kb.flush()
    expect(errors.Throttled, lambda: kb.unwrap(w.blob))
    b.emu.admin("/admin/throttle", {"vault": "kv", "limit": 0})
    b.emu.admin("/admin/tokens/revoke", {})
    b.emu.stop()
    kb.flush()
    expect(errors.BackendUnavailable, lambda: kb.unwrap(w.blob))
    kb.close()


def test_thousand_pipelined_unwraps_on_one_connection(root):
    b = kbfix.softhsm(root, "max_inflight = 1024\n")

    async def main():
        async with AsyncClient(b.sock, pool_size=1) as kb:
            dks = [await kb.datakey("aes") for _ in range(50)]
            await kb.flush()
            # cold and cached blobs mixed: the cache answers at once, the token later
            blobs = [dks[i % 50] for i in range(1000)]
            order = []

            async def one(i):
                r = await kb.unwrap(blobs[i].blob)
                order.append(i)
                return r
            conn = kb._conns[0]
            results = await asyncio.gather(*[one(i) for i in range(1000)])
            assert [r.plaintext for r in results] == [d.plaintext for d in blobs]
            assert kb._conns == [conn], "all on one connection"
            assert conn.pending.next_id > 1000 and conn.pending.answered >= 1000
            assert order != sorted(order), "answers came back out of order (the token's are later)"
            assert any(not r.cached for r in results) and any(r.cached for r in results)
    run(main())


def test_thousand_pipelined_unwraps_from_threads(root):
    b = kbfix.softhsm(root, "max_inflight = 1024\n")
    kb = Client(b.sock, pool_size=1)
    dks = [kb.datakey("aes") for _ in range(20)]
    kb.flush()
    out = [None] * 1000

    def worker(k):
        for i in range(k, 1000, 16):
            out[i] = kb.unwrap(dks[i % 20].blob).plaintext
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == [dks[i % 20].plaintext for i in range(1000)]
    assert len(kb._conns) == 1
    kb.close()


def test_broker_restart_clean_error_then_recovery(root):
    b = kbfix.softhsm(root)
    kb = Client(b.sock)
    blob = kb.wrap("aes", DEK).blob

    async def inflight():
        async with AsyncClient(b.sock, pool_size=1) as akb:
            await akb.flush()
            # fewer than max_inflight (128), so busy is not among the answers
            tasks = [asyncio.ensure_future(akb.unwrap(blob)) for _ in range(100)]
            await asyncio.sleep(0)      # let them be sent
            b.kill()
            res = await asyncio.gather(*tasks, return_exceptions=True)
            for r in res:
                assert isinstance(r, keybroker.Unwrapped) or isinstance(r, errors.IoError), r
            b.start()
            assert (await akb.unwrap(blob)).plaintext == DEK
    run(inflight())
    b.stop()
    e = expect(errors.IoError, lambda: kb.unwrap(blob))
    assert b.sock in e.message
    b.start()
    assert kb.unwrap(blob).plaintext == DEK


def test_idle_timeout_reconnects(root):
    b = kbfix.softhsm(root, "idle_timeout = 1s\n")
    kb = Client(b.sock, pool_size=1)
    blob = kb.wrap("aes", DEK).blob
    first = kb._conns[0]
    wait_for(first.ended, 10, "the broker to close the idle connection")
    assert kb.unwrap(blob).plaintext == DEK
    assert kb._conns[0] is not first

    async def main():
        async with AsyncClient(b.sock, pool_size=1) as akb:
            c = akb._conns[0]
            t = asyncio.get_running_loop().time()
            while not c.closed:
                assert asyncio.get_running_loop().time() - t < 10, "the broker closed the idle connection"
                await asyncio.sleep(0.05)
            assert (await akb.unwrap(blob)).plaintext == DEK
    run(main())


def test_batch_larger_than_one_request(root):
    b = kbfix.softhsm(root, "max_batch = 100\n")
    kb = Client(b.sock)
    dks = [kb.datakey("aes") for _ in range(30)]
    blobs = [dks[i % 30].blob for i in range(2500)]
    blobs[7] = "kb1:aes:01:AES-KWP:AAAA:zzzzzzzz"
    before = kb.status()["counters"]["requests"]
    res = kb.unwrap_many(blobs)
    assert len(res) == 2500 and isinstance(res[7], errors.BadBlob)
    assert all(res[i].plaintext == dks[i % 30].plaintext for i in range(2500) if i != 7)
    assert kb.max_batch == 1024, "the client learnt nothing by hand: too_large split it"
    assert kb.status()["counters"]["requests"] > before, "several requests"
    small = Client(b.sock, max_request_bytes=4096)   # split by bytes before sending
    before = small.status()["counters"]["requests"]
    res = small.rewrap_many(blobs[8:400])
    assert len(res) == 392 and all(kb.unwrap(r.blob).plaintext == dks[(i + 8) % 30].plaintext
                                   for i, r in enumerate(res))
    assert small.status()["counters"]["requests"] - before > 5, "split by bytes into several requests"


def test_cancelled_task_leaves_the_connection_usable(root):
    b = kbfix.azure(root)
    kb = Client(b.sock)
    slow = kb.wrap("az", DEK).blob
    fast = kb.wrap("hsm", b"f" * 32).blob
    kb.unwrap(fast)

    async def main():
        async with AsyncClient(b.sock, pool_size=1) as akb:
            await akb.flush("az")
            b.emu.admin("/admin/faults", {"latency_ms": 1500})
            t = asyncio.ensure_future(akb.unwrap(slow))
            conn = akb._conns[0]
            while not conn.pending.waiting:
                await asyncio.sleep(0.01)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            assert not conn.pending.waiting, "forgotten at once"
            b.emu.admin("/admin/faults", {"latency_ms": 0})
            assert (await akb.unwrap(slow)).plaintext == DEK, "the late answer is skipped"
            assert akb._conns == [conn]
    run(main())

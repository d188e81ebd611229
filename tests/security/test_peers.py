#!/usr/bin/env python3
"""Who may ask: SO_PEERCRED against [broker] allow_uids/allow_gids, admin_uids/admin_gids,
and the per-key allow_* narrowing, with real peers running as nobody."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sectest import Broker, Token, as_peer, b64, check, run, shareable, unb64, wait_for  # noqa: E402

NOBODY = 65534
# the socket is shared with the group nogroup, as socket_group shares it with clients
SHARED = "socket_mode = 0660\nsocket_group = nogroup\n"


def denied(answer, *words):
    check(isinstance(answer, dict) and answer.get("ok") is False, "expected a refusal, got %s" % answer)
    check(answer["error"]["code"] == "permission_denied", "expected permission_denied, got %s" % answer["error"])
    msg = answer["error"]["message"]
    for w in words:
        check(w in msg, "the refusal names %r: %s" % (w, msg))


def ok(answer, what):
    check(isinstance(answer, dict) and answer.get("ok") is True, "%s: expected ok, got %s" % (what, answer))
    return answer


def peer_of_another_uid_is_refused_at_connect(root):
    shareable(root)
    token = Token(root)
    kb = Broker(root, token, broker_extra=SHARED)
    # unasked: one line, then the connection is closed
    pid, answers = as_peer(kb.sock, [])
    first = answers[0]
    check(first is not None and first.get("id") is None, "refusal line has id null: %s" % first)
    denied(first)
    check(answers[-1] == "eof", "the connection is closed after the refusal: %s" % answers)
    log = wait_for(lambda: "refused a connection from uid %d gid %d pid %d" % (NOBODY, NOBODY, pid)
                   in kb.log_text() and kb.log_text(), 5, "the refusal in the log")
    check(re.search(r"refused a connection from uid %d gid %d pid %d" % (NOBODY, NOBODY, pid), log),
          "the log names uid, gid and pid")
    # a request sent anyway is never served
    _, answers = as_peer(kb.sock, [{"op": "status"}, {"op": "status"}])
    check(not any(isinstance(a, dict) and a.get("ok") for a in answers), "a refused peer got an answer: %s" % answers)
    check(answers[-1] == "eof", "the connection is closed: %s" % answers)
    # the daemon's own uid still may
    kb.ok({"op": "status"})


def allow_lists_take_names_numbers_and_groups(root):
    shareable(root)
    token = Token(root)
    pt = os.urandom(32)
    # by user name
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = root, nobody\n")
    _, a = as_peer(kb.sock, [{"op": "wrap", "key": "aes", "plaintext": b64(pt)}])
    blob = ok(a[0], "nobody listed by name wraps")["blob"]
    check(kb.stop() == 0, "stop")
    # by number
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = 0 %d\n" % NOBODY)
    _, a = as_peer(kb.sock, [{"op": "unwrap", "blob": blob}])
    check(unb64(ok(a[0], "nobody listed by number unwraps")["plaintext"]) == pt, "same DEK back")
    check(kb.stop() == 0, "stop")
    # by group name: the peer's gid is nogroup
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = 0\nallow_gids = nogroup\n")
    _, a = as_peer(kb.sock, [{"op": "status"}])
    ok(a[0], "a member of an allowed group by name")
    check(kb.stop() == 0, "stop")
    # by group number
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = 0\nallow_gids = %d\n" % NOBODY)
    _, a = as_peer(kb.sock, [{"op": "status"}])
    ok(a[0], "a member of an allowed group by number")
    check(kb.stop() == 0, "stop")
    # an unknown user name stops startup
    bad = Broker(root, token, start=False, broker_extra=SHARED + "allow_uids = no-such-user-kb\n")
    rc = bad.start(expect_fail=True)
    check(rc != 0 and "no-such-user-kb" in bad.log_text(), "an unknown user name is a config error")


def key_policy_narrows_each_operation(root):
    """A uid allowed globally but not for unwrap on a key gets permission_denied for unwrap
    and success for what it may do; each allow_* narrows its own class only."""
    shareable(root)
    token = Token(root)
    aes = ("allow_unwrap = root\nallow_wrap = nobody, 0\nallow_rewrap = @nogroup\n"
           "allow_get = @0\nallow_rotate = root\n")
    rsa = "allow_unwrap = @%d\n" % NOBODY
    kb = Broker(root, token, aes_extra=aes, rsa_extra=rsa,
                broker_extra=SHARED + "allow_uids = root nobody\nadmin_uids = root nobody\n")
    pt = os.urandom(32)
    # the daemon's own uid wraps on both keys and may unwrap aes
    aes_blob = kb.ok({"op": "wrap", "key": "aes", "plaintext": b64(pt)})["blob"]
    rsa_blob = kb.ok({"op": "wrap", "key": "rsa", "plaintext": b64(pt)})["blob"]
    check(unb64(kb.ok({"op": "unwrap", "blob": aes_blob})["plaintext"]) == pt, "root unwraps aes")
    kb.ok({"op": "get", "key": "aes"})
    _, a = as_peer(kb.sock, [
        {"op": "wrap", "key": "aes", "plaintext": b64(pt)},     # 0 allowed by name
        {"op": "datakey", "key": "aes"},                        # 1 wrap covers datakey
        {"op": "unwrap", "blob": aes_blob},                     # 2 not in allow_unwrap
        {"op": "rewrap", "blob": aes_blob},                     # 3 in @nogroup
        {"op": "get", "key": "aes"},                            # 4 not in @0
        {"op": "rotate", "key": "aes"},                         # 5 an admin, but not in allow_rotate
        {"op": "unwrap", "blob": rsa_blob},                     # 6 in @65534
        {"op": "get", "key": "rsa"},                            # 7 rsa: no narrowing
        {"op": "rotate", "key": "rsa"},                         # 8 rsa: no narrowing, and an admin
        {"op": "status"},                                       # 9 still connected after denials
    ])
    ok(a[0], "wrap aes")
    ok(a[1], "datakey aes")
    denied(a[2], "unwrap", "aes")
    ok(a[3], "rewrap aes")
    denied(a[4], "get", "aes")
    denied(a[5], "rotate", "aes")
    check(unb64(ok(a[6], "unwrap rsa")["plaintext"]) == pt, "nobody unwraps rsa to the same DEK")
    ok(a[7], "get rsa")
    check(ok(a[8], "rotate rsa")["version"] == "02", "rotate rsa made version 02")
    ok(a[9], "status after denials")
    check(a[-1] == "open", "a denial does not close the connection: %s" % a[-1])
    # what nobody wrapped, root unwraps; the refusal was about the peer, not the blob
    check(unb64(kb.ok({"op": "unwrap", "blob": a[0]["blob"]})["plaintext"]) == pt, "root unwraps nobody's blob")


def every_allow_list_refuses_each_operation_to_a_peer_it_does_not_list(root):
    """Each per-key allow_* list refuses its operations to a peer it does not list, by uid
    list and by gid list, single and batch, and rewrap on either side (the blob's key and
    the target key); the same peer listed on another key is served every operation."""
    shareable(root)
    token = Token(root)
    ops = ("unwrap", "wrap", "rewrap", "get", "rotate")
    by_uid = "".join("allow_%s = root\n" % o for o in ops)        # nobody is not listed
    by_gid = "".join("allow_%s = @0\n" % o for o in ops)          # nogroup is not listed
    listed = ("allow_unwrap = nobody root\nallow_wrap = nobody, 0\nallow_rewrap = root nobody\n"
              "allow_get = @nogroup root\nallow_rotate = %d root\n" % NOBODY)
    keys = (token.key_section("byuid", "aes-kek", "AES-KWP", by_uid) +
            token.key_section("bygid", "aes-kek", "AES-KWP", by_gid) +
            token.key_section("open", "aes-kek", "AES-KWP", listed))
    kb = Broker(root, token, keys=keys,
                broker_extra=SHARED + "allow_uids = root nobody\nadmin_uids = root nobody\n")
    pt = os.urandom(32)
    # root is on every list: it makes a blob under each key
    blobs = {k: kb.ok({"op": "wrap", "key": k, "plaintext": b64(pt)})["blob"] for k in ("byuid", "bygid", "open")}
    for key in ("byuid", "bygid"):
        reqs = [
            ({"op": "wrap", "key": key, "plaintext": b64(pt)}, "wrap", "allow_wrap"),
            ({"op": "datakey", "key": key}, "datakey", "allow_wrap"),
            ({"op": "unwrap", "blob": blobs[key]}, "unwrap", "allow_unwrap"),
            ({"op": "unwrap", "blobs": [blobs[key]]}, "unwrap", "allow_unwrap"),
            ({"op": "rewrap", "blob": blobs[key], "key": "open"}, "rewrap", "allow_rewrap"),   # the blob's key
            ({"op": "rewrap", "blob": blobs["open"], "key": key}, "rewrap", "allow_rewrap"),   # the target key
            ({"op": "rewrap", "blobs": [blobs[key]]}, "rewrap", "allow_rewrap"),
            ({"op": "get", "key": key}, "get", "allow_get"),
            ({"op": "rotate", "key": key}, "rotate", "allow_rotate"),
        ]
        _, a = as_peer(kb.sock, [r for r, _, _ in reqs] + [{"op": "status"}])
        for (req, op, lst), ans in zip(reqs, a):
            if "blobs" in req:
                ok(ans, "a batch is answered item by item")
                ans = ans["results"][0]
            denied(ans, "may not %s with key %s" % (op, key), lst)
        ok(a[len(reqs)], "status after the refusals")
        check(kb.ok({"op": "get", "key": key})["latest"] == "01", "%s: the refused rotate made no version" % key)
    # the same peer, listed by name, number or group, is served every operation on key open
    _, a = as_peer(kb.sock, [
        {"op": "wrap", "key": "open", "plaintext": b64(pt)},
        {"op": "datakey", "key": "open"},
        {"op": "unwrap", "blob": blobs["open"]},
        {"op": "unwrap", "blobs": [blobs["open"]]},
        {"op": "rewrap", "blob": blobs["open"], "key": "open"},
        {"op": "get", "key": "open"},
        {"op": "rotate", "key": "open"},
    ])
    for ans, what in zip(a, ("wrap", "datakey", "unwrap", "unwrap batch", "rewrap", "get", "rotate")):
        ok(ans, "%s on key open" % what)
    check(unb64(a[2]["plaintext"]) == pt and unb64(a[3]["results"][0]["plaintext"]) == pt, "the listed peer unwraps the DEK")
    check(a[6]["version"] == "02", "the listed peer's rotate made version 02")


def admin_operations_are_refused_for_non_admins(root):
    shareable(root)
    token = Token(root)
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = root nobody\n")
    pt = os.urandom(32)
    _, a = as_peer(kb.sock, [
        {"op": "rotate", "key": "aes"},
        {"op": "flush"},
        {"op": "flush", "key": "rsa"},
        {"op": "wrap", "key": "aes", "plaintext": b64(pt)},
        {"op": "get", "key": "aes"},
        {"op": "doctor", "key": "aes"},
    ])
    denied(a[0], "rotate")
    denied(a[1], "flush")
    denied(a[2], "flush")
    ok(a[3], "a non-admin still wraps")
    check(ok(a[4], "get")["latest"] == "01", "the refused rotate made no version")
    denied(a[5], "doctor")
    # root is an admin by default, and so is the daemon's own uid
    check(kb.ok({"op": "rotate", "key": "aes"})["version"] == "02", "root rotates")
    kb.ok({"op": "flush"})
    check(kb.stop() == 0, "stop")
    # admin_gids admits a group; admin_uids by name
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = root nobody\nadmin_gids = nogroup\n")
    _, a = as_peer(kb.sock, [{"op": "flush"}, {"op": "rotate", "key": "rsa"}])
    ok(a[0], "flush by a member of admin_gids")
    ok(a[1], "rotate by a member of admin_gids")
    check(kb.stop() == 0, "stop")
    kb = Broker(root, token, broker_extra=SHARED + "allow_uids = root nobody\nadmin_uids = nobody\n")
    _, a = as_peer(kb.sock, [{"op": "flush"}])
    ok(a[0], "flush by a uid in admin_uids")


if __name__ == "__main__":
    run(globals())

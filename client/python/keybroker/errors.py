"""keybroker.errors: one exception class per stable error code of the protocol.

Every error a client raises is a KeybrokerError carrying ``code`` (the stable
name that travels on the socket, docs/protocol.md; the names of
common/kb_codes.h) and ``message`` (the broker's words, or ours; for people,
may change). Match on the class or on ``code``, never on ``message``.
"""
from __future__ import annotations


class KeybrokerError(Exception):
    """The base of every error this package raises."""

    code: str = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return "%s: %s" % (self.code, self.message)


def _make(name: str, code: str, doc: str) -> type[KeybrokerError]:
    return type(name, (KeybrokerError,), {"code": code, "__doc__": doc})


BadRequest = _make("BadRequest", "bad_request", "A field is missing, mistyped or out of range.")
UnknownOp = _make("UnknownOp", "unknown_op", "op names no operation.")
TooLarge = _make("TooLarge", "too_large", "The request, or a field in it, is over its limit.")
UnknownKey = _make("UnknownKey", "unknown_key", "No key of that name is configured.")
BadBlob = _make("BadBlob", "bad_blob", "The blob is malformed, truncated or altered.")
UnknownVersion = _make("UnknownVersion", "unknown_version", "The key has no such version.")
KeyDisabled = _make("KeyDisabled", "key_disabled", "The key service says the key is disabled.")
KeyUnavailable = _make("KeyUnavailable", "key_unavailable", "The key object is gone or unusable.")
KeyExpired = _make("KeyExpired", "key_expired", "Past the key's exp.")
KeyNotYetValid = _make("KeyNotYetValid", "key_not_yet_valid", "Before the key's nbf.")
PermissionDenied = _make("PermissionDenied", "permission_denied", "Policy refuses the operation.")
MechanismUnsupported = _make("MechanismUnsupported", "mechanism_unsupported",
                             "The token or service cannot do that algorithm.")
BackendUnavailable = _make("BackendUnavailable", "backend_unavailable",
                           "The token is gone or the key service cannot be reached.")
Throttled = _make("Throttled", "throttled", "The key service throttled past the deadline.")
AuthFailed = _make("AuthFailed", "auth_failed", "Login to the token or key service failed.")
AuditUnavailable = _make("AuditUnavailable", "audit_unavailable", "The audit log cannot be written.")
Busy = _make("Busy", "busy", "A connection or in-flight limit is reached; retry later.")
Internal = _make("Internal", "internal", "A bug in the broker, or a code this client does not know.")
ProtocolError = _make("ProtocolError", "protocol_error", "Client side: the broker's answer is unreadable.")
IoError = _make("IoError", "io_error", "Client side: cannot reach or talk to the socket.")

BY_CODE: dict[str, type[KeybrokerError]] = {
    c.code: c for c in (BadRequest, UnknownOp, TooLarge, UnknownKey, BadBlob, UnknownVersion,
                        KeyDisabled, KeyUnavailable, KeyExpired, KeyNotYetValid, PermissionDenied,
                        MechanismUnsupported, BackendUnavailable, Throttled, AuthFailed,
                        AuditUnavailable, Busy, Internal, ProtocolError, IoError)
}


def from_wire(error: object) -> KeybrokerError:
    """The exception for an ``"error"`` object of a response; an unknown code
    (a newer broker) is Internal, keeping the code's name in ``code``."""
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return ProtocolError("the broker sent a failure without an error code")
    code, message = error["code"], str(error.get("message", ""))
    cls = BY_CODE.get(code)
    if cls is None:
        return Internal("unknown error code %s from the broker: %s" % (code, message), code=code)
    return cls(message)

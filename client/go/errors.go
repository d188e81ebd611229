package keybroker

import "fmt"

// Error is a failed call: the stable code (the name that travels on the
// socket, docs/protocol.md) and the broker's message, or ours. Match with
// errors.Is against the Err* values, or compare Code; Message is for people.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is makes errors.Is(err, ErrBadBlob) true for every *Error of that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == ""
}

func code(c string) *Error { return &Error{Code: c} }

// One value per stable code, for errors.Is.
var (
	ErrBadRequest           = code("bad_request")
	ErrUnknownOp            = code("unknown_op")
	ErrTooLarge             = code("too_large")
	ErrUnknownKey           = code("unknown_key")
	ErrBadBlob              = code("bad_blob")
	ErrUnknownVersion       = code("unknown_version")
	ErrKeyDisabled          = code("key_disabled")
	ErrKeyUnavailable       = code("key_unavailable")
	ErrKeyExpired           = code("key_expired")
	ErrKeyNotYetValid       = code("key_not_yet_valid")
	ErrPermissionDenied     = code("permission_denied")
	ErrMechanismUnsupported = code("mechanism_unsupported")
	ErrBackendUnavailable   = code("backend_unavailable")
	ErrThrottled            = code("throttled")
	ErrAuthFailed           = code("auth_failed")
	ErrAuditUnavailable     = code("audit_unavailable")
	ErrBusy                 = code("busy")
	ErrInternal             = code("internal")
	// client side
	ErrProtocol = code("protocol_error") // the broker's answer is unreadable
	ErrIO       = code("io_error")       // cannot reach or talk to the socket
)

// Codes lists every sentinel, for tables and tests.
var Codes = []*Error{ErrBadRequest, ErrUnknownOp, ErrTooLarge, ErrUnknownKey, ErrBadBlob,
	ErrUnknownVersion, ErrKeyDisabled, ErrKeyUnavailable, ErrKeyExpired, ErrKeyNotYetValid,
	ErrPermissionDenied, ErrMechanismUnsupported, ErrBackendUnavailable, ErrThrottled,
	ErrAuthFailed, ErrAuditUnavailable, ErrBusy, ErrInternal, ErrProtocol, ErrIO}

func errorf(c *Error, format string, args ...any) *Error {
	return &Error{Code: c.Code, Message: fmt.Sprintf(format, args...)}
}

// fromWire is the error of a response's "error" object; an unknown code (a
// newer broker) keeps its name in Code and matches ErrInternal too.
func fromWire(w *wireError) error {
	if w == nil || w.Code == "" {
		return errorf(ErrProtocol, "the broker sent a failure without an error code")
	}
	for _, c := range Codes {
		if c.Code == w.Code {
			return &Error{Code: w.Code, Message: w.Message}
		}
	}
	return &unknownCode{Error{Code: w.Code, Message: w.Message}}
}

// unknownCode is a code this client does not know: errors.Is matches it
// with ErrInternal as well as with an *Error of its own code, and errors.As
// finds the *Error.
type unknownCode struct{ e Error }

func (u *unknownCode) Error() string { return u.e.Error() }

func (u *unknownCode) Is(target error) bool { return target == ErrInternal }

func (u *unknownCode) Unwrap() error { return &u.e }

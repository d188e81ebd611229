/*
 * kb_codes.h: the stable error codes of the keybroker protocol.
 *
 * Shared by the daemon and libkeybroker. A code's name is what travels on the
 * socket ("error":{"code":"key_disabled"}); the numeric value is only stable
 * within one build, so programs should compare names or use kb_code_from_name().
 */
#ifndef KB_CODES_H
#define KB_CODES_H

typedef enum kb_code {
	KB_OK = 0,
	KB_E_BAD_REQUEST,          /* malformed JSON, missing or mistyped field */
	KB_E_UNKNOWN_OP,           /* "op" names no operation */
	KB_E_TOO_LARGE,            /* request line or field over its limit */
	KB_E_UNKNOWN_KEY,          /* no [key:NAME] section with that name */
	KB_E_BAD_BLOB,             /* blob is malformed, truncated or tampered */
	KB_E_UNKNOWN_VERSION,      /* the key has no such version */
	KB_E_KEY_DISABLED,         /* the key service says the key is disabled */
	KB_E_KEY_UNAVAILABLE,      /* the key object is gone (deleted) or unusable */
	KB_E_KEY_EXPIRED,          /* past the key's exp */
	KB_E_KEY_NOT_YET_VALID,    /* before the key's nbf */
	KB_E_PERMISSION_DENIED,    /* policy (ours or the key service's) refuses */
	KB_E_MECHANISM_UNSUPPORTED,/* the token or service cannot do that algorithm */
	KB_E_BACKEND_UNAVAILABLE,  /* token gone, network down, timeout */
	KB_E_THROTTLED,            /* the key service throttled past our deadline */
	KB_E_AUTH_FAILED,          /* login or token acquisition failed */
	KB_E_AUDIT_UNAVAILABLE,    /* the audit log cannot be written */
	KB_E_BUSY,                 /* a per-connection or global limit is reached */
	KB_E_INTERNAL,             /* a bug or resource failure in the broker */
	KB_E_PROTOCOL,             /* client side: the broker's answer is unreadable */
	KB_E_IO,                   /* client side: cannot reach or talk to the socket */
	KB_CODE_COUNT
} kb_code;

/* kb_code_name returns the wire name of code ("internal" for out-of-range). */
const char *kb_code_name(kb_code code);

/* kb_code_from_name returns the code named name, or KB_E_INTERNAL if unknown. */
kb_code kb_code_from_name(const char *name);

#endif

/*
 * kb_codes.h: the stable error codes of the keybroker protocol.
 *
 * Shared by the daemon and libkeybroker, installed as <keybroker/kb_codes.h>.
 * A code's name is what travels on the socket ("error":{"code":"key_disabled"});
 * its numeric value is part of libkeybroker's ABI: each code has a fixed
 * value, never changed nor reused, and a new code is appended with the next
 * value (tests/package/kb_codes.golden holds them). A program built against an
 * older libkeybroker may thus be handed a code past the KB_CODE_COUNT it was
 * compiled with: kb_code_name() names it all the same.
 */
#ifndef KB_CODES_H
#define KB_CODES_H

/* What libkeybroker exports; everything else in it is hidden. */
#ifndef KB_API
#define KB_API __attribute__((visibility("default")))
#endif

typedef enum kb_code {
	KB_OK = 0,
	KB_E_BAD_REQUEST = 1,               /* malformed JSON, missing or mistyped field */
	KB_E_UNKNOWN_OP = 2,                /* "op" names no operation */
	KB_E_TOO_LARGE = 3,                 /* request line or field over its limit */
	KB_E_UNKNOWN_KEY = 4,               /* no [key:NAME] section with that name */
	KB_E_BAD_BLOB = 5,                  /* blob is malformed, truncated or tampered */
	KB_E_UNKNOWN_VERSION = 6,           /* the key has no such version */
	KB_E_KEY_DISABLED = 7,              /* the key service says the key is disabled */
	KB_E_KEY_UNAVAILABLE = 8,           /* the key object is gone (deleted) or unusable */
	KB_E_KEY_EXPIRED = 9,               /* past the key's exp */
	KB_E_KEY_NOT_YET_VALID = 10,        /* before the key's nbf */
	KB_E_PERMISSION_DENIED = 11,        /* policy (ours or the key service's) refuses */
	KB_E_MECHANISM_UNSUPPORTED = 12,    /* the token or service cannot do that algorithm */
	KB_E_BACKEND_UNAVAILABLE = 13,      /* token gone, network down, timeout */
	KB_E_THROTTLED = 14,                /* the key service throttled past our deadline */
	KB_E_AUTH_FAILED = 15,              /* login or token acquisition failed */
	KB_E_AUDIT_UNAVAILABLE = 16,        /* the audit log cannot be written */
	KB_E_BUSY = 17,                     /* a per-connection or global limit is reached */
	KB_E_INTERNAL = 18,                 /* a bug or resource failure in the broker */
	KB_E_PROTOCOL = 19,                 /* client side: the broker's answer is unreadable */
	KB_E_IO = 20,                       /* client side: cannot reach or talk to the socket */
	/* a new code goes here, with the next value */
	KB_CODE_COUNT                       /* the number of codes this header knows */
} kb_code;

/* kb_code_name returns the wire name of code ("internal" for out-of-range). */
KB_API const char *kb_code_name(kb_code code);

/* kb_code_from_name returns the code named name, or KB_E_INTERNAL if unknown. */
KB_API kb_code kb_code_from_name(const char *name);

#endif

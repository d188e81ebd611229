#include <string.h>

#include "kb_codes.h"

static const char *const names[KB_CODE_COUNT] = {
	[KB_OK] = "ok",
	[KB_E_BAD_REQUEST] = "bad_request",
	[KB_E_UNKNOWN_OP] = "unknown_op",
	[KB_E_TOO_LARGE] = "too_large",
	[KB_E_UNKNOWN_KEY] = "unknown_key",
	[KB_E_BAD_BLOB] = "bad_blob",
	[KB_E_UNKNOWN_VERSION] = "unknown_version",
	[KB_E_KEY_DISABLED] = "key_disabled",
	[KB_E_KEY_UNAVAILABLE] = "key_unavailable",
	[KB_E_KEY_EXPIRED] = "key_expired",
	[KB_E_KEY_NOT_YET_VALID] = "key_not_yet_valid",
	[KB_E_PERMISSION_DENIED] = "permission_denied",
	[KB_E_MECHANISM_UNSUPPORTED] = "mechanism_unsupported",
	[KB_E_BACKEND_UNAVAILABLE] = "backend_unavailable",
	[KB_E_THROTTLED] = "throttled",
	[KB_E_AUTH_FAILED] = "auth_failed",
	[KB_E_AUDIT_UNAVAILABLE] = "audit_unavailable",
	[KB_E_BUSY] = "busy",
	[KB_E_INTERNAL] = "internal",
	[KB_E_PROTOCOL] = "protocol_error",
	[KB_E_IO] = "io_error",
};

const char *kb_code_name(kb_code code)
{
	if ((unsigned)code >= KB_CODE_COUNT)
		return names[KB_E_INTERNAL];
	return names[code];
}

kb_code kb_code_from_name(const char *name)
{
	for (int i = 0; name && i < KB_CODE_COUNT; i++)
		if (strcmp(names[i], name) == 0)
			return (kb_code)i;
	return KB_E_INTERNAL;
}

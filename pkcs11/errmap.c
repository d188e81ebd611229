/*
 * errmap.c: the one place where a token's CKR_* answer becomes a kb_code and
 * a message that names the key, the version, the token and the fix.
 */
#include <stdio.h>
#include <string.h>

#include "p11.h"

static const struct {
	CK_RV rv;
	const char *name;
} names[] = {
	{ CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR" },
	{ CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED" },
	{ CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD" },
	{ CKR_HOST_MEMORY, "CKR_HOST_MEMORY" },
	{ CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID" },
	{ CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR" },
	{ CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY" },
	{ CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED" },
	{ CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID" },
	{ CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE" },
	{ CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE" },
	{ CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID" },
	{ CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT" },
	{ CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED" },
	{ CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE" },
	{ CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE" },
	{ CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID" },
	{ CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID" },
	{ CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID" },
	{ CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE" },
	{ CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT" },
	{ CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE" },
	{ CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED" },
	{ CKR_PIN_LOCKED, "CKR_PIN_LOCKED" },
	{ CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED" },
	{ CKR_SESSION_COUNT, "CKR_SESSION_COUNT" },
	{ CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID" },
	{ CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE" },
	{ CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT" },
	{ CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT" },
	{ CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED" },
	{ CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED" },
	{ CKR_UNWRAPPING_KEY_HANDLE_INVALID, "CKR_UNWRAPPING_KEY_HANDLE_INVALID" },
	{ CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT" },
	{ CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN" },
	{ CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID" },
	{ CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE" },
	{ CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID" },
	{ CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT" },
	{ CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL" },
	{ CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED" },
	{ CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID" },
	{ CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID" },
	{ CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY" },
	{ CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED" },
	{ CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE" },
	{ CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID" },
	{ CKR_CANT_LOCK, "CKR_CANT_LOCK" },
};

/* op_name is what the user asked for, as the CLI and protocol name it. */
static const char *op_name(kb_p11_op op)
{
	switch (op) {
	case KB_P11_OP_OPEN:
		return "startup";
	case KB_P11_OP_DESCRIBE:
		return "get";
	case KB_P11_OP_WRAP:
		return "wrap";
	case KB_P11_OP_UNWRAP:
		return "unwrap";
	case KB_P11_OP_ROTATE:
		return "rotate";
	case KB_P11_OP_RANDOM:
		return "datakey (random bytes)";
	case KB_P11_OP_DOCTOR:
		return "doctor";
	}
	return "?";
}

const char *kb_p11_rv_name(CK_RV rv)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].rv == rv)
			return names[i].name;
	return NULL;
}

static bool session_lost(CK_RV rv)
{
	switch (rv) {
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_DEVICE_ERROR:
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	case CKR_USER_NOT_LOGGED_IN:
		return true;
	default:
		return false;
	}
}

kb_p11_recovery kb_p11_recovery_for(CK_RV rv)
{
	if (session_lost(rv))
		return KB_P11_REOPEN;
	if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID ||
	    rv == CKR_WRAPPING_KEY_HANDLE_INVALID || rv == CKR_UNWRAPPING_KEY_HANDLE_INVALID)
		return KB_P11_REFIND;
	return KB_P11_GIVE_UP;
}

/* is_unwrap_data tells whether fn just read the caller's ciphertext. */
static bool is_unwrap_data(const kb_p11_call *c, const char *fn)
{
	return c->op == KB_P11_OP_UNWRAP &&
	       (strcmp(fn, "C_Decrypt") == 0 || strcmp(fn, "C_UnwrapKey") == 0);
}

kb_code kb_p11_error(const kb_p11_call *c, const char *fn, CK_RV rv, kb_err *err)
{
	const kb_p11_key *k = c->key;
	const char *tok = k->tok ? k->tok->label : "?";
	const char *ver = c->version ? c->version : "latest";
	const char *alg = kb_alg_name(c->alg);
	const char *name = kb_p11_rv_name(rv);
	char rvs[48], pin[300];

	if (name)
		snprintf(rvs, sizeof(rvs), "%s", name);
	else
		snprintf(rvs, sizeof(rvs), "CKR 0x%lx", (unsigned long)rv);

	switch (rv) {
	case CKR_PIN_INCORRECT:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_INVALID:
		kb_p11_pin_describe(&k->conf.pin, pin, sizeof(pin));
		return kb_err_set(err, KB_E_AUTH_FAILED,
				  "key %s: token %s refused the user PIN (%s): put the token's user PIN in %s",
				  k->name, tok, rvs, pin);
	case CKR_PIN_LOCKED:
	case CKR_PIN_EXPIRED:
		return kb_err_set(err, KB_E_AUTH_FAILED,
				  "key %s: the user PIN of token %s is locked or expired (%s): reset it with the SO PIN (pkcs11-tool --init-pin --login-type so)",
				  k->name, tok, rvs);
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		if (c->op == KB_P11_OP_WRAP)
			return kb_err_set(err, KB_E_PERMISSION_DENIED,
					  "the token refused: key %s version %s may not wrap (CKA_WRAP/CKA_ENCRYPT is false on token %s): set it on the object or rotate",
					  k->name, ver, tok);
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "the token refused: key %s version %s may not unwrap (CKA_UNWRAP/CKA_DECRYPT is false on token %s): set it on the object, or rewrap old blobs while it is allowed",
				  k->name, ver, tok);
	case CKR_KEY_TYPE_INCONSISTENT:
	case CKR_WRAPPING_KEY_TYPE_INCONSISTENT:
	case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
		return kb_err_set(err, KB_E_KEY_UNAVAILABLE,
				  "key %s version %s on token %s cannot do %s (%s from %s): the object is of the wrong type; check object= in uri",
				  k->name, ver, tok, alg, rvs, fn);
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_WRAPPING_KEY_HANDLE_INVALID:
	case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
		return kb_err_set(err, c->op == KB_P11_OP_UNWRAP ? KB_E_UNKNOWN_VERSION : KB_E_KEY_UNAVAILABLE,
				  "the key service (token %s) no longer has key %s version %s (label %s): it was deleted from the token",
				  tok, k->name, ver, k->conf.label);
	case CKR_ARGUMENTS_BAD:
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
		if (c->alg == KB_ALG_RSA_OAEP_256)
			return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
					  "token %s cannot do RSA-OAEP-256 (%s from %s): this token only does RSA-OAEP with SHA-1 (use RSA-OAEP)",
					  tok, rvs, fn);
		if (rv != CKR_ARGUMENTS_BAD || c->op == KB_P11_OP_WRAP || c->op == KB_P11_OP_UNWRAP)
			return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
					  "token %s does not support %s for key %s (%s from %s): use a token that does, or another alg",
					  tok, alg, k->name, rvs, fn);
		break;
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
	case CKR_WRAPPED_KEY_INVALID:
	case CKR_WRAPPED_KEY_LEN_RANGE:
		return kb_err_set(err, KB_E_BAD_BLOB,
				  "the ciphertext does not unwrap under key %s version %s (%s): the blob is corrupt, or was not wrapped by this key",
				  k->name, ver, rvs);
	case CKR_GENERAL_ERROR:
	case CKR_FUNCTION_FAILED:
		/* SoftHSM answers a failed OAEP or RFC 5649 check with these. */
		if (is_unwrap_data(c, fn))
			return kb_err_set(err, KB_E_BAD_BLOB,
					  "the ciphertext does not unwrap under key %s version %s (token %s: %s): the blob is corrupt, or was not wrapped by this key",
					  k->name, ver, tok, rvs);
		break;
	case CKR_DATA_LEN_RANGE:
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the plaintext is too long for key %s version %s under %s (token %s: %s)",
				  k->name, ver, alg, tok, rvs);
	case CKR_BUFFER_TOO_SMALL:
		return kb_err_set(err, KB_E_TOO_LARGE,
				  "the unwrapped key of key %s version %s is larger than %d bytes", k->name, ver,
				  KB_SECRET_MAX);
	case CKR_SESSION_COUNT:
	case CKR_DEVICE_MEMORY:
	case CKR_HOST_MEMORY:
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "token %s is out of sessions or memory (%s from %s): lower [broker] workers or free the token",
				  tok, rvs, fn);
	case CKR_TOKEN_WRITE_PROTECTED:
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "token %s is write-protected (%s from %s): rotate needs a writable token", tok, rvs, fn);
	default:
		if (session_lost(rv))
			return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
					  "token %s is unavailable (%s from %s): check that it is present; the broker reopens its session and logs in again on the next request",
					  tok, rvs, fn);
		break;
	}
	/* the token refused without a specific reason: name the call and the likely fix */
	if (strcmp(fn, "C_Login") == 0)
		return kb_err_set(err, KB_E_AUTH_FAILED,
				  "key %s: token %s refused the login during %s (%s from C_Login): check the token's state and the PIN in %s",
				  k->name, tok, op_name(c->op), rvs,
				  (kb_p11_pin_describe(&k->conf.pin, pin, sizeof(pin)), pin));
	if (strncmp(fn, "C_GenerateKey", 13) == 0)
		/*
		 * A TPM without a resource manager is full: tpm2-pkcs11 keeps its
		 * primary, seal object and the key in use loaded, and swtpm holds 3.
		 */
		return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
				  "key %s: token %s cannot make the next version during rotate (%s from %s, also without the optional attributes): %screate it with the token's own tool (same label %s, the next CKA_ID) and the broker finds it",
				  k->name, tok, rvs, fn,
				  k->tok && strstr(k->tok->library, "TPM") ?
					  "reach the TPM through a resource manager (TPM2_PKCS11_TCTI=device:/dev/tpmrm0 or tabrmd), or " : "",
				  k->conf.label);
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
			  "key %s: token %s answered %s to %s during %s%s%s: see the token's own log; the broker retries on the next request",
			  k->name, tok, rvs, fn, op_name(c->op), alg[0] ? " with " : "", alg);
}

kb_code kb_p11_fail(kb_p11_call *c, const char *fn, CK_RV rv, kb_err *err)
{
	c->rv = rv;
	return kb_p11_error(c, fn, rv, err);
}

kb_code kb_p11_decrypted(kb_p11_call *c, const char *fn, CK_RV rv, const CK_BYTE *buf, CK_ULONG n, uint8_t *pt,
			 size_t *ptlen, kb_err *err)
{
	if (rv != CKR_OK)
		return kb_p11_fail(c, fn, rv, err);
	if (n > *ptlen)
		return kb_err_set(err, KB_E_TOO_LARGE, "the unwrapped key is %lu bytes, over the %zu-byte buffer",
				  (unsigned long)n, *ptlen);
	memcpy(pt, buf, n);
	*ptlen = n;
	return KB_OK;
}

kb_code kb_p11_absent(kb_p11_call *c, CK_RV rv, kb_err *err)
{
	const kb_p11_token *t = c->key->tok;
	const char *name = kb_p11_rv_name(rv);

	c->rv = CKR_OK; /* nothing to recover on this session: the token is away */
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
			  "token %s (serial %s, module %s) is not present (%s from C_GetTokenInfo): key %s is served again as soon as the token is back; reinsert or restore it",
			  t->label, t->serial, t->module, name ? name : "an error", c->key->name);
}

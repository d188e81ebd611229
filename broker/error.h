/*
 * error.h: the one error type of the broker.
 *
 * Every fallible function returns a kb_code and, on failure, fills a kb_err
 * with the code and a message that says what happened and what to do. The
 * message goes to the client as is, so it must never hold a secret.
 */
#ifndef KB_ERROR_H
#define KB_ERROR_H

#include <stddef.h>

#include "kb_codes.h"

#define KB_ERR_MSG_MAX 384

typedef struct kb_err {
	kb_code code;
	char msg[KB_ERR_MSG_MAX];
	char request_id[64]; /* the key service's id of the last request, for the audit log; "" if none */
} kb_err;

/*
 * kb_err_set records code and a printf-style message in err (which may be
 * NULL), clears its request_id, and returns code, so callers can write
 * `return kb_err_set(...)`. A backend sets request_id after it.
 */
kb_code kb_err_set(kb_err *err, kb_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* kb_err_clear resets err to KB_OK with an empty message. */
void kb_err_clear(kb_err *err);

#endif

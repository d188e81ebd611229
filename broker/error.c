#include <stdarg.h>
#include <stdio.h>

#include "error.h"

kb_code kb_err_set(kb_err *err, kb_code code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	err->request_id[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void kb_err_clear(kb_err *err)
{
	if (err == NULL)
		return;
	err->code = KB_OK;
	err->msg[0] = '\0';
	err->request_id[0] = '\0';
}

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

void emu_reply_init(struct emu_reply *rep)
{
	memset(rep, 0, sizeof(*rep));
	rep->retry_after_ms = -1;
	rep->content_type = "application/json; charset=utf-8";
}

void emu_reply_free(struct emu_reply *rep)
{
	free(rep->body);
	free(rep->www_authenticate);
	rep->body = NULL;
	rep->www_authenticate = NULL;
}

void emu_reply_json(struct emu_reply *rep, unsigned status, cJSON *j)
{
	free(rep->body);
	rep->status = status;
	rep->body = j ? cJSON_PrintUnformatted(j) : NULL;
	cJSON_Delete(j);
}

void emu_error(struct emu_reply *rep, unsigned status, const char *code, const char *inner,
	       const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(err, "code", code);
	cJSON_AddStringToObject(err, "message", msg);
	if (inner)
		cJSON_AddStringToObject(cJSON_AddObjectToObject(err, "innererror"), "code", inner);
	emu_reply_json(rep, status, root);
}

void emu_oauth_error(struct emu_reply *rep, unsigned status, const char *error,
		     const char *description)
{
	cJSON *root = cJSON_CreateObject();

	cJSON_AddStringToObject(root, "error", error);
	cJSON_AddStringToObject(root, "error_description", description);
	emu_reply_json(rep, status, root);
}

void emu_error_purge_protected(struct emu_reply *rep, const struct emu_vault *v)
{
	emu_error(rep, 403, "Forbidden", NULL,
		  "Operation \"purge\" is not allowed because purge protection is enabled for this %s. The service will purge the key itself after the retention period of %u days has passed.",
		  v->mhsm ? "managed HSM" : "vault", v->retention_days);
}

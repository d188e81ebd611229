/*
 * backends.c: the registry of backends, the one place that knows them all.
 * A new backend is a new folder and one line here.
 */
#include <string.h>

#include "backend.h"
#include "azure.h"
#include "pkcs11.h"

static const kb_backend_ops *const backends[] = {
	&kb_pkcs11_backend,
	&kb_azure_backend,
};

const kb_backend_ops *kb_backend_find(const char *name)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

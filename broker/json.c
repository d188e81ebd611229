#include <stdlib.h>

#include "json.h"

static _Thread_local bool oom;

void *kb_json_malloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		oom = true;
	return p;
}

bool kb_json_out_of_memory(void)
{
	return oom;
}

cJSON *kb_json_parse_whole(const char *s, size_t n)
{
	const char *end = NULL;
	cJSON *j;

	oom = false;
	j = cJSON_ParseWithLengthOpts(s, n, &end, 0);

	if (j == NULL)
		return NULL;
	for (; end < s + n; end++) {
		if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
			cJSON_Delete(j);
			return NULL;
		}
	}
	return j;
}

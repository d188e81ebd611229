/*
 * json.c: the one way the broker parses JSON text (see json.h).
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"

static _Thread_local bool oom;
static _Thread_local char dup_name[KB_JSON_NAME_MAX + 1];

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

const char *kb_json_duplicate(void)
{
	return dup_name[0] ? dup_name : NULL;
}

static int by_name(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static const char *twice(const char *name)
{
	size_t n = strlen(name);

	if (n > KB_JSON_NAME_MAX)
		n = KB_JSON_NAME_MAX;
	memcpy(dup_name, name, n);
	dup_name[n] = '\0';
	return name;
}

/* duplicate finds a name given twice in one object of j, sorting each object's names (n log n). */
static const char *duplicate(const cJSON *j)
{
	const cJSON *c;
	const cJSON **names;
	const char *d = NULL;
	size_t n = 0, i = 0;

	if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
		return NULL;
	for (c = j->child; c; c = c->next) {
		if ((d = duplicate(c)) != NULL)
			return d;
		n++;
	}
	if (!cJSON_IsObject(j) || n < 2)
		return NULL;
	if ((names = malloc(n * sizeof(*names))) == NULL) {
		oom = true;
		return "";
	}
	for (c = j->child; c; c = c->next)
		names[i++] = c;
	qsort(names, n, sizeof(*names), by_name);
	for (i = 1; i < n && d == NULL; i++)
		if (strcmp(names[i - 1]->string, names[i]->string) == 0)
			d = twice(names[i]->string);
	free(names);
	return d;
}

cJSON *kb_json_parse_whole(const char *s, size_t n)
{
	const char *end = NULL;
	cJSON *j;

	oom = false;
	dup_name[0] = '\0';
	j = cJSON_ParseWithLengthOpts(s, n, &end, 0);

	if (j == NULL)
		return NULL;
	for (; end < s + n; end++) {
		if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
			cJSON_Delete(j);
			return NULL;
		}
	}
	if (duplicate(j) != NULL) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

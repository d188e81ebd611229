/*
 * cli_admin.c: the subcommands that look at and manage the broker and its
 * keys: status, get, rotate, flush, metrics, doctor.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/*
 * iso_times replaces the Unix times of get's versions (created, nbf, exp) by
 * ISO 8601 UTC text, for people; --json keeps the numbers.
 */
static void iso_times(cJSON *j)
{
	static const char *const names[] = { "created", "nbf", "exp" };
	const cJSON *v;

	cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "versions")) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			cJSON *t = cJSON_GetObjectItemCaseSensitive(v, names[i]);
			time_t secs;
			struct tm tm;
			char text[32];

			if (!cJSON_IsNumber(t))
				continue;
			secs = (time_t)t->valuedouble;
			if (gmtime_r(&secs, &tm) == NULL ||
			    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
				continue;
			cJSON_ReplaceItemInObjectCaseSensitive((cJSON *)v, names[i],
							       cJSON_CreateString(text));
		}
	}
}

/* show_json prints a response line for people (out_fields), or as is with --json. */
static int show_json(cli *c, kb_code code, kb_error *err, char *json)
{
	cJSON *j;

	if (code != KB_OK || c->json) {
		kb_free(json);
		return cli_finish(c, code, err);
	}
	j = cJSON_Parse(json);
	kb_free(json);
	if (j == NULL)
		return cli_fail(KB_E_PROTOCOL, "cannot parse the response");
	iso_times(j);
	out_fields(j);
	cJSON_Delete(j);
	return CLI_EXIT_OK;
}

/* run_show serves status, and get KEY (the one with an argument). */
static int run_show(cli *c)
{
	kb_error err;
	kb_code code;
	char *json;
	int r = cli_connect(c);

	if (r != CLI_EXIT_OK)
		return r;
	if (c->nargs == 0)
		code = kb_status(c->kc, &json, &err);
	else
		code = kb_get(c->kc, c->args[0], &json, &err);
	return show_json(c, code, &err, json);
}

const cli_cmd cli_status = {
	.name = "status",
	.synopsis = "",
	.summary = "show the broker's version, uptime, cache, keys and counters",
	.help = "Prints the status response as a list, then the keys as a table.\n\n"
		"example:\n  keybroker status\n  keybroker status --json | jq .cache\n",
	.run = run_show,
};

const cli_cmd cli_get = {
	.name = "get",
	.synopsis = "KEY",
	.summary = "describe a key: algorithm, type, size, versions, public key",
	.help = "Prints the key's fields, its versions (oldest first) as a table, and for\n"
		"RSA keys the public key in PEM. A version's times (created, nbf, exp, where\n"
		"the key service keeps them) are shown in ISO 8601 UTC; --json gives them as\n"
		"Unix seconds.\n\n"
		"example:\n  keybroker get rsa\n",
	.min_args = 1, .max_args = 1,
	.run = run_show,
};

static int run_rotate(cli *c)
{
	kb_result res;
	kb_error err;
	kb_code code;
	int r = cli_connect(c);

	if (r != CLI_EXIT_OK)
		return r;
	code = kb_rotate(c->kc, c->args[0], &res, &err);
	return cli_finish_result(c, code, &err, &res, res.version);
}

const cli_cmd cli_rotate = {
	.name = "rotate",
	.synopsis = "KEY",
	.summary = "make a new latest version of KEY; older versions still unwrap",
	.help = "Prints the new version. New wraps use it; blobs under older versions\n"
		"still unwrap, and keybroker rewrap moves them to it.\n\n"
		"example:\n  keybroker rotate aes\n",
	.min_args = 1, .max_args = 1,
	.run = run_rotate,
};

static int run_flush(cli *c)
{
	unsigned n = 0;
	kb_error err;
	kb_code code;
	int r = cli_connect(c);

	if (r != CLI_EXIT_OK)
		return r;
	code = kb_flush(c->kc, c->nargs > 0 ? c->args[0] : NULL, &n, &err);
	if (code == KB_OK && !c->json)
		printf("%u\n", n);
	return cli_finish(c, code, &err);
}

const cli_cmd cli_flush = {
	.name = "flush",
	.synopsis = "[KEY]",
	.summary = "evict every cached DEK (or KEY's) from the broker at once",
	.help = "Prints how many cached DEKs were evicted (and zeroed). The next unwrap\n"
		"asks the key service again, so a revoked key fails now, not at the end\n"
		"of the cache TTL.\n\n"
		"example:\n  keybroker flush\n  keybroker flush aes\n",
	.min_args = 0, .max_args = 1,
	.run = run_flush,
};

static int run_metrics(cli *c)
{
	kb_error err;
	kb_code code;
	char *text = NULL;
	int r = cli_connect(c);

	if (r != CLI_EXIT_OK)
		return r;
	code = kb_metrics(c->kc, &text, &err);
	if (code == KB_OK && !c->json) {
		size_t n = strlen(text);

		fputs(text, stdout);
		if (n == 0 || text[n - 1] != '\n')
			putchar('\n');
	}
	kb_free(text);
	return cli_finish(c, code, &err);
}

const cli_cmd cli_metrics = {
	.name = "metrics",
	.synopsis = "",
	.summary = "print the broker's counters in Prometheus text format",
	.help = "example:\n  keybroker metrics | grep keybroker_cache_hits_total\n",
	.run = run_metrics,
};

/* doctor_passed is true when every check's status is "pass" or "warn". */
static bool doctor_passed(const cJSON *checks)
{
	const cJSON *ch;

	if (!cJSON_IsArray(checks))
		return false;
	cJSON_ArrayForEach(ch, checks) {
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(ch, "status");

		if (!cJSON_IsString(st) || (strcmp(st->valuestring, "pass") != 0 &&
					    strcmp(st->valuestring, "warn") != 0))
			return false;
	}
	return true;
}

static int run_doctor(cli *c)
{
	static const char *const cols[] = { "check", "status", "detail", "fix", NULL };
	cJSON *req, *resp = NULL, *checks;
	char *line, *json = NULL;
	kb_error err;
	kb_code code;
	int r = cli_connect(c);

	if (r != CLI_EXIT_OK)
		return r;
	req = cJSON_CreateObject();
	if (req == NULL || !cJSON_AddStringToObject(req, "op", "doctor") ||
	    !cJSON_AddStringToObject(req, "key", c->args[0]) ||
	    (line = cJSON_PrintUnformatted(req)) == NULL) {
		cJSON_Delete(req);
		return cli_fail(KB_E_IO, "out of memory");
	}
	cJSON_Delete(req);
	code = kb_call(c->kc, line, &json, &err);
	cJSON_free(line);
	if (code != KB_OK) {
		kb_free(json);
		return cli_finish(c, code, &err);
	}
	resp = cJSON_Parse(json);
	kb_free(json);
	checks = cJSON_GetObjectItemCaseSensitive(resp, "checks");
	if (!cJSON_IsArray(checks)) {
		cJSON_Delete(resp);
		return cli_fail(KB_E_PROTOCOL, "the doctor response has no \"checks\" list");
	}
	if (c->json)
		cli_finish(c, code, &err);
	else
		out_table(checks, cols);
	r = doctor_passed(checks) ? CLI_EXIT_OK : CLI_EXIT_BROKER;
	cJSON_Delete(resp);
	return r;
}

const cli_cmd cli_doctor = {
	.name = "doctor",
	.synopsis = "KEY",
	.summary = "check that KEY works end to end, and say how to fix what does not",
	.help = "The broker runs its checks on KEY (configuration, reachability,\n"
		"permissions, a test wrap and unwrap, ...) and reports each as pass,\n"
		"warn or fail, with a fix. Prints them as a table. Exit status: 0 when\n"
		"every check passes or warns, 1 when one fails (or the broker errs).\n\n"
		"example:\n  keybroker doctor rsa\n",
	.min_args = 1, .max_args = 1,
	.run = run_doctor,
};

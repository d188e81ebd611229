/*
 * cli_call.c: what every subcommand shares to read its options, reach the
 * broker, and end a call with the right output and exit status. It sits
 * below cli_main.c and the subcommand files and calls none of them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char *cli_optval(const cli *c, const char *name)
{
	for (int i = 0; i < CLI_MAX_OPTS && c->cmd->opts[i].name != NULL; i++)
		if (strcmp(c->cmd->opts[i].name, name) == 0)
			return c->val[i];
	return NULL;
}

int cli_usage(const cli *c, const char *fmt, ...)
{
	const char *name = c && c->cmd ? c->cmd->name : NULL;
	va_list ap;

	fprintf(stderr, "keybroker%s%s: ", name ? " " : "", name ? name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'keybroker%s%s --help'.\n", name ? " " : "", name ? name : "");
	return CLI_EXIT_USAGE;
}

int cli_fail(kb_code code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "keybroker: %s: ", kb_code_name(code));
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CLI_EXIT_BROKER;
}

int cli_connect(cli *c)
{
	kb_error err;

	if (kb_client_connect(c->socket, &c->kc, &err) == KB_OK)
		return CLI_EXIT_OK;
	/* the library names its own knobs; the CLI adds its own */
	if (c->socket == NULL)
		return cli_fail(err.code, "%s\nkeybroker: -s PATH names another socket", err.message);
	return cli_fail(err.code, "%s", err.message);
}

int cli_finish(const cli *c, kb_code code, const kb_error *err)
{
	const char *line = kb_client_last_response(c->kc);

	if (c->json && line != NULL) {
		fputs(line, stdout);
		fputc('\n', stdout);
	}
	if (code != KB_OK)
		return cli_fail(code, "%s", err->message);
	return CLI_EXIT_OK;
}

int cli_finish_result(const cli *c, kb_code code, const kb_error *err, kb_result *res,
		      const char *text)
{
	if (code == KB_OK && !c->json)
		printf("%s\n", text);
	kb_result_clear(res);
	return cli_finish(c, code, err);
}

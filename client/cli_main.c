/*
 * cli_main.c: keybroker's entry point: global options, the subcommand table
 * and option parsing for every subcommand. It dispatches down to the
 * subcommands; what they share is in cli_call.c, below them all.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_cmd *const commands[] = {
	&cli_status, &cli_get,
	&cli_wrap, &cli_unwrap, &cli_datakey, &cli_rewrap,
	&cli_rotate, &cli_flush, &cli_metrics, &cli_doctor,
	&cli_bench,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The options every subcommand accepts too, before or after its name. */
enum { G_SOCKET, G_JSON, G_HELP, G_VERSION, G_COUNT };
static const cli_opt globals[G_COUNT] = {
	[G_SOCKET] = { "socket", 's', "PATH", "the broker's socket (default: $" KB_SOCKET_ENV ",\n"
				       "                         then " KB_DEFAULT_SOCKET ")" },
	[G_JSON] = { "json", 0, NULL, "print the broker's response object as is" },
	[G_HELP] = { "help", 'h', NULL, "show help; keybroker COMMAND --help for one command" },
	[G_VERSION] = { "version", 0, NULL, "print keybroker's version" },
};

static void print_opts(FILE *f, const cli_opt *opts, size_t n)
{
	char left[64];

	for (size_t i = 0; i < n && opts[i].name != NULL; i++) {
		if (opts[i].short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", opts[i].short_name,
				 opts[i].name, opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", opts[i].name,
				 opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
		fprintf(f, "  %-22s %s\n", left, opts[i].help);
	}
}

static void print_default_socket(FILE *f)
{
	char def[KB_SOCKET_PATH_MAX + 1];

	if (kb_default_socket(def, sizeof(def)) < 0)
		snprintf(def, sizeof(def), "(too long)");
	fprintf(f, "The socket is -s PATH, else $" KB_SOCKET_ENV ", else " KB_DEFAULT_SOCKET
		"\n(or " KB_FALLBACK_SOCKET " without XDG_RUNTIME_DIR); here: %s\n", def);
}

static void main_help(FILE *f)
{
	fprintf(f, "usage: keybroker [-s PATH] [--json] COMMAND [ARGS...]\n\n"
		"Talk to keybrokerd, the local key broker, over its Unix socket.\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(f, "\noptions (also accepted after COMMAND):\n");
	print_opts(f, globals, G_COUNT);
	fprintf(f, "\n");
	print_default_socket(f);
	fprintf(f, "\nExit status: 0 success, 1 the broker refused or could not be reached\n"
		"(\"keybroker: CODE: message\" on stderr), 2 bad usage.\n"
		"See keybroker(1); keybroker COMMAND --help shows one command.\n");
}

static void cmd_help(const cli_cmd *cmd)
{
	printf("usage: keybroker %s%s%s\n\n%s\n", cmd->name, cmd->synopsis[0] ? " " : "",
	       cmd->synopsis, cmd->summary);
	if (cmd->opts[0].name != NULL) {
		printf("\noptions:\n");
		print_opts(stdout, cmd->opts, CLI_MAX_OPTS);
	}
	printf("\nglobal options:\n");
	print_opts(stdout, globals, G_SOCKET + 2);
	printf("\n%s", cmd->help);
}

/* find_opt looks name (long) or short up in opts[0..n); -1 if absent. */
static int find_opt(const cli_opt *opts, int n, const char *name, size_t len, char short_name)
{
	for (int i = 0; i < n && opts[i].name != NULL; i++) {
		if (short_name ? opts[i].short_name == short_name
			       : strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
			return i;
	}
	return -1;
}

/*
 * take_opt handles the option in argv[*i] (its name is name[0..len), or
 * short_name; attached is its "=value" or "-xVALUE" part, or NULL). Global
 * options land in c and *help / *version; the subcommand's in c->val.
 */
static int take_opt(cli *c, int argc, char **argv, int *i, const char *name, size_t len,
		    char short_name, const char *attached, bool *help, bool *version)
{
	const cli_opt *o;
	const char *v = "";
	int k;
	bool global = false;

	k = c->cmd ? find_opt(c->cmd->opts, CLI_MAX_OPTS, name, len, short_name) : -1;
	if (k < 0) {
		k = find_opt(globals, G_COUNT, name, len, short_name);
		global = true;
	}
	if (k < 0) {
		if (short_name)
			return cli_usage(c, "unknown option -%c", short_name);
		return cli_usage(c, "unknown option --%.*s", (int)len, name);
	}
	o = global ? &globals[k] : &c->cmd->opts[k];
	if (o->arg != NULL) {
		if (attached != NULL)
			v = attached;
		else if (*i + 1 < argc)
			v = argv[++*i];
		else
			return cli_usage(c, "--%s needs a value (%s)", o->name, o->arg);
	} else if (attached != NULL) {
		if (short_name)   /* no bundling of short flags */
			return cli_usage(c, "unknown option -%c%s", short_name, attached);
		return cli_usage(c, "--%s takes no value", o->name);
	}
	if (!global)
		c->val[k] = v;
	else if (k == G_SOCKET)
		c->socket = v;
	else if (k == G_JSON)
		c->json = true;
	else if (k == G_HELP)
		*help = true;
	else
		*version = true;
	return CLI_EXIT_OK;
}

/*
 * parse_args reads argv[from..argc) for c's subcommand (or the global options
 * alone when c->cmd is NULL, stopping at the first non-option, which is the
 * subcommand's name; *stop gets its index, or argc).
 */
static int parse_args(cli *c, int argc, char **argv, int from, int *stop, bool *help,
		      bool *version)
{
	bool options_end = false;
	int r;

	for (int i = from; i < argc; i++) {
		char *a = argv[i];

		if (options_end || a[0] != '-' || a[1] == '\0') {
			if (c->cmd == NULL) {
				*stop = i;
				return CLI_EXIT_OK;
			}
			c->args[c->nargs++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			options_end = true;
			continue;
		}
		if (a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);

			r = take_opt(c, argc, argv, &i, a + 2, len, 0, eq ? eq + 1 : NULL, help,
				     version);
		} else {
			r = take_opt(c, argc, argv, &i, NULL, 0, a[1], a[2] ? a + 2 : NULL, help,
				     version);
		}
		if (r != CLI_EXIT_OK)
			return r;
	}
	*stop = argc;
	return CLI_EXIT_OK;
}

static const cli_cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	cli c = { 0 };
	bool help = false, version = false;
	int stop = argc, r;

	r = parse_args(&c, argc, argv, 1, &stop, &help, &version);
	if (r != CLI_EXIT_OK)
		return r;
	if (version) {
		printf("keybroker %s\n", KB_VERSION);
		return CLI_EXIT_OK;
	}
	if (stop < argc && strcmp(argv[stop], "help") == 0) {
		help = true;
		stop = stop + 1 < argc ? stop + 1 : argc;
	}
	if (stop == argc) {
		if (help) {
			main_help(stdout);
			return CLI_EXIT_OK;
		}
		return cli_usage(NULL, "no command given");
	}
	c.cmd = find_cmd(argv[stop]);
	if (c.cmd == NULL)
		return cli_usage(NULL, "unknown command '%s'", argv[stop]);
	c.args = calloc((size_t)argc, sizeof(*c.args));
	if (c.args == NULL)
		return cli_fail(KB_E_IO, "out of memory");
	r = parse_args(&c, argc, argv, stop + 1, &stop, &help, &version);
	if (r == CLI_EXIT_OK && (help || version)) {
		if (help)
			cmd_help(c.cmd);
		else
			printf("keybroker %s\n", KB_VERSION);
	} else if (r == CLI_EXIT_OK && c.nargs < c.cmd->min_args) {
		r = cli_usage(&c, "missing argument; usage: keybroker %s %s", c.cmd->name,
			      c.cmd->synopsis);
	} else if (r == CLI_EXIT_OK && c.nargs > c.cmd->max_args) {
		r = cli_usage(&c, "unexpected argument '%s'", c.args[c.cmd->max_args]);
	} else if (r == CLI_EXIT_OK && c.socket != NULL && c.socket[0] == '\0') {
		r = cli_usage(&c, "-s/--socket needs a non-empty path");
	} else if (r == CLI_EXIT_OK) {
		r = c.cmd->run(&c);
	}
	kb_client_close(c.kc);
	free(c.args);
	if (fflush(stdout) != 0 && r == CLI_EXIT_OK)
		r = cli_fail(KB_E_IO, "cannot write to stdout");
	return r;
}

/*
 * cli_output.c: how the CLI reads input, writes secrets and prints responses
 * for people.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int out_secret_guard(const cli *c)
{
	if (cli_optval(c, "force-tty") != NULL || !isatty(STDOUT_FILENO))
		return CLI_EXIT_OK;
	return cli_usage(c, "refusing to print key material to a terminal, where it would "
			 "stay in the scrollback; use --out FILE, redirect stdout, or pass "
			 "--force-tty");
}

void out_wipe_free(void *p, size_t n)
{
	if (p == NULL)
		return;
	explicit_bzero(p, n);
	free(p);
}

bool out_write(int fd, const void *p, size_t n)
{
	const char *b = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		b += w;
		n -= (size_t)w;
	}
	return true;
}

int out_read(const char *path, uint8_t **buf, size_t *n)
{
	const char *name = path ? path : "stdin";
	int fd = STDIN_FILENO, e;
	uint8_t *b;
	ssize_t r = 0;
	size_t len = 0;

	*buf = NULL;
	*n = 0;
	if (path != NULL && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return cli_fail(KB_E_IO, "cannot open %s: %s", path, strerror(errno));
	/* One byte over the limit tells "exactly the limit" from "more". */
	b = malloc(CLI_MAX_INPUT + 2);
	if (b == NULL) {
		if (path != NULL)
			close(fd);
		return cli_fail(KB_E_IO, "out of memory");
	}
	for (;;) {
		r = read(fd, b + len, CLI_MAX_INPUT + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len > CLI_MAX_INPUT)
			break;
	}
	e = errno;
	if (path != NULL)
		close(fd);
	if (r < 0) {
		out_wipe_free(b, CLI_MAX_INPUT + 2);
		return cli_fail(KB_E_IO, "cannot read %s: %s", name, strerror(e));
	}
	if (len > CLI_MAX_INPUT) {
		out_wipe_free(b, CLI_MAX_INPUT + 2);
		return cli_fail(KB_E_TOO_LARGE, "%s holds over %d bytes; keybroker reads at "
				"most that", name, CLI_MAX_INPUT);
	}
	b[len] = '\0';
	*buf = b;
	*n = len;
	return CLI_EXIT_OK;
}

/* kind names what a non-regular file is, for the refusal. */
static const char *kind(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISLNK(m) ? "a symbolic link" :
	       S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device" :
	       S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* target_refusal says why path cannot take key material, or returns NULL if it can. */
static const char *target_refusal(const char *path, char *why, size_t cap)
{
	struct stat st;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return NULL;  /* a new file; a missing directory fails at create */
		snprintf(why, cap, "cannot inspect --out %s: %s", path, strerror(errno));
		return why;
	}
	if (S_ISREG(st.st_mode))
		return NULL;
	snprintf(why, cap, "--out %s is %s; keybroker writes key material only to a regular "
		 "file, which it replaces whole (redirect stdout to write anywhere else)", path,
		 kind(st.st_mode));
	return why;
}

int out_check_target(const cli *c, const char *path)
{
	char why[PATH_MAX + 200];

	if (target_refusal(path, why, sizeof(why)) != NULL)
		return cli_usage(c, "%s", why);
	return CLI_EXIT_OK;
}

/*
 * out_write_secret writes to a new file beside path and renames it over
 * path: the new file is ours from the start (0600, O_EXCL), a failure leaves
 * path as it was, and no reader ever sees half a key.
 */
int out_write_secret(const char *path, const uint8_t *p, size_t n)
{
	char why[PATH_MAX + 200], *tmp = NULL, *slash;
	const char *base;
	int fd = -1, e = 0, dfd;

	if (target_refusal(path, why, sizeof(why)) != NULL)
		return cli_fail(KB_E_IO, "%s", why);
	slash = strrchr(path, '/');
	base = slash ? slash + 1 : path;
	if (asprintf(&tmp, "%.*s.%s.XXXXXX", slash ? (int)(slash - path + 1) : 0, path, base) < 0)
		return cli_fail(KB_E_IO, "out of memory");
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		free(tmp);
		return cli_fail(KB_E_IO, "cannot create a file beside %s: %s", path, strerror(e));
	}
	if (!out_write(fd, p, n) || fsync(fd) != 0)
		e = errno;
	if (close(fd) != 0 && e == 0)
		e = errno;
	if (e == 0 && rename(tmp, path) != 0)
		e = errno;
	if (e != 0) {
		unlink(tmp);  /* ours: path itself is untouched */
		free(tmp);
		return cli_fail(KB_E_IO, "cannot write %s: %s; it is left as it was", path,
				strerror(e));
	}
	/* the rename is durable once the directory is */
	tmp[slash ? slash - path + 1 : 0] = '\0';
	dfd = open(tmp[0] ? tmp : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(tmp);
	return CLI_EXIT_OK;
}

/* scalar prints a scalar JSON value (or compact JSON for anything else) into f. */
static void scalar(FILE *f, const cJSON *v)
{
	char *s;

	if (cJSON_IsString(v)) {
		fputs(v->valuestring, f);
	} else if (cJSON_IsBool(v)) {
		fputs(cJSON_IsTrue(v) ? "yes" : "no", f);
	} else if (cJSON_IsNumber(v)) {
		if (v->valuedouble == (double)(long long)v->valuedouble)
			fprintf(f, "%lld", (long long)v->valuedouble);
		else
			fprintf(f, "%g", v->valuedouble);
	} else if (cJSON_IsNull(v)) {
		fputs("-", f);
	} else if ((s = cJSON_PrintUnformatted(v)) != NULL) {
		fputs(s, f);
		cJSON_free(s);
	}
}

/* cell returns the text of v as a new string: scalar() into memory. */
static char *cell(const cJSON *v)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);

	if (f == NULL)
		return NULL;
	if (v != NULL)
		scalar(f, v);
	fclose(f);
	return s;
}

/* value_text is how out_fields shows one member: a scalar, k=v pairs, or a list. */
static char *value_text(const cJSON *v)
{
	const cJSON *m;
	char *s = NULL;
	size_t n = 0;
	FILE *f;

	if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
		return cell(v);
	if ((f = open_memstream(&s, &n)) == NULL)
		return NULL;
	cJSON_ArrayForEach(m, v) {
		if (m != v->child)
			fputs(cJSON_IsObject(v) ? " " : ", ", f);
		if (cJSON_IsObject(v))
			fprintf(f, "%s=", m->string);
		scalar(f, m);
	}
	fclose(f);
	return s;
}

static bool is_table(const cJSON *v)
{
	return cJSON_IsArray(v) && cJSON_IsObject(v->child);
}

static bool is_block(const cJSON *v)
{
	return cJSON_IsString(v) && strchr(v->valuestring, '\n') != NULL;
}

/*
 * out_width is the width tables and lists fit: the terminal's, else $COLUMNS,
 * else 80, when stdout is a terminal; 0 (no limit: one row per line, however
 * long) when it is not, so a pipe or a file gets lines a script can split.
 */
static size_t out_width(void)
{
	struct winsize ws;
	const char *env;
	long n;

	if (!isatty(STDOUT_FILENO))
		return 0;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	env = getenv("COLUMNS");
	if (env != NULL && (n = strtol(env, NULL, 10)) > 0 && n < 10000)
		return (size_t)n;
	return 80;
}

/*
 * wrap_text prints text and a newline in lines of at most width columns: the
 * first goes on after what is already printed (col columns), the others
 * after indent spaces. Lines break at spaces; a word longer than a line is cut.
 */
static void wrap_text(const char *p, size_t col, size_t indent, size_t width)
{
	bool empty = true; /* no word on this line yet */

	if (width < indent + 8)
		width = indent + 8; /* narrower than the indent: still make progress */
	for (;;) {
		size_t word;

		p += strspn(p, " ");
		if (*p == '\0')
			break;
		word = strcspn(p, " ");
		if (!empty && col + 1 + word > width) {
			printf("\n%*s", (int)indent, "");
			col = indent;
			empty = true;
		} else if (!empty) {
			putchar(' ');
			col++;
		}
		if (empty && col > indent && col + word > width) {
			printf("\n%*s", (int)indent, "");
			col = indent;
		}
		while (col + word > width) {
			size_t room = width - col;

			printf("%.*s\n%*s", (int)room, p, (int)indent, "");
			p += room;
			word -= room;
			col = indent;
		}
		printf("%.*s", (int)word, p);
		p += word;
		col += word;
		empty = false;
	}
	putchar('\n');
}

void out_table(const cJSON *arr, const char *const *cols)
{
	size_t ncols = 0, nrow, total, w[32] = { 0 }, width = out_width();
	const cJSON *row;

	while (cols[ncols] != NULL && ncols < 32)
		ncols++;
	for (size_t j = 0; j < ncols; j++)
		w[j] = strlen(cols[j]);
	cJSON_ArrayForEach(row, arr) {
		for (size_t j = 0; j < ncols; j++) {
			char *s = cell(cJSON_GetObjectItemCaseSensitive(row, cols[j]));

			if (s != NULL && strlen(s) > w[j])
				w[j] = strlen(s);
			free(s);
		}
	}
	/*
	 * The row keeps the leading columns that fit the width (the first
	 * always); the others go under it, one "name: value" each, wrapped.
	 */
	nrow = 1;
	total = w[0];
	while (nrow < ncols && (width == 0 || total + 2 + w[nrow] <= width)) {
		total += 2 + w[nrow];
		nrow++;
	}
	for (size_t j = 0; j < nrow; j++) {
		for (const char *p = cols[j]; *p; p++)
			putchar(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		printf("%*s", j + 1 < nrow ? (int)(w[j] - strlen(cols[j]) + 2) : 0, "");
	}
	putchar('\n');
	cJSON_ArrayForEach(row, arr) {
		for (size_t j = 0; j < ncols; j++) {
			char *s = cell(cJSON_GetObjectItemCaseSensitive(row, cols[j]));
			const char *v = s ? s : "";

			if (j + 1 < nrow) {
				printf("%-*s  ", (int)w[j], v);
			} else if (j + 1 == nrow) {
				if (width > 0 && strlen(v) > width) /* only the first column can be this wide */
					wrap_text(v, 0, 4, width);
				else
					printf("%s\n", v);
			} else if (v[0] != '\0' && strcmp(v, "-") != 0) {
				printf("    %s: ", cols[j]);
				wrap_text(v, 6 + strlen(cols[j]), 8, width);
			}
			free(s);
		}
	}
}

/* table_columns collects the member names of arr's objects, in order of first appearance. */
static size_t table_columns(const cJSON *arr, const char **cols, size_t cap)
{
	const cJSON *row, *m;
	size_t n = 0, j;

	cJSON_ArrayForEach(row, arr) {
		cJSON_ArrayForEach(m, row) {
			for (j = 0; j < n && strcmp(cols[j], m->string) != 0; j++)
				;
			if (j == n && n + 1 < cap)
				cols[n++] = m->string;
		}
	}
	cols[n] = NULL;
	return n;
}

void out_fields(const cJSON *obj)
{
	const cJSON *m;
	const char *cols[32];
	size_t w = 0, width = out_width();

	cJSON_ArrayForEach(m, obj) {
		if (strlen(m->string) > w && !is_table(m) && !is_block(m))
			w = strlen(m->string);
	}
	cJSON_ArrayForEach(m, obj) {
		char *s;

		if (strcmp(m->string, "id") == 0 || strcmp(m->string, "ok") == 0 || is_table(m) ||
		    is_block(m))
			continue;
		s = value_text(m);
		printf("%-*s  ", (int)w, m->string);
		if (width > 0)
			wrap_text(s ? s : "", w + 2, w + 2, width);
		else
			printf("%s\n", s ? s : "");
		free(s);
	}
	cJSON_ArrayForEach(m, obj) {
		if (!is_table(m) || table_columns(m, cols, 32) == 0)
			continue;
		printf("\n%s:\n", m->string);
		out_table(m, cols);
	}
	cJSON_ArrayForEach(m, obj) {
		if (is_block(m))
			printf("\n%s:\n%s%s", m->string, m->valuestring,
			       m->valuestring[strlen(m->valuestring) - 1] == '\n' ? "" : "\n");
	}
}

/*
 * rewrap_files.c: the files of a bulk rewrap, see rewrap_files.h.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "rewrap_files.h"

#define JOURNAL_MAGIC "keybroker-rewrap-journal 1"
#define HEX_LEN 64                          /* a SHA-256 in hex */
#define RECORD_LEN (1 + 1 + HEX_LEN + 1 + HEX_LEN + 1)

/* One file the command writes. */
typedef struct wfile {
	const char *path, *what;  /* what names it in messages: "--out" */
	int fd;
	bool created;             /* by rwf_open: removed again if the run is refused */
	struct stat st;
} wfile;

/* A file the command reads or writes, for the same-file checks. */
typedef struct named {
	const char *what, *path;
	const struct stat *st;
} named;

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/*
 * open_written opens w->path to read and write, never through a symbolic
 * link and without truncating it (whatever it holds is judged first), or
 * creates it 0600. Returns the exit status.
 */
static int open_written(cli *c, wfile *w)
{
	struct stat st;

	if (lstat(w->path, &st) == 0 && !S_ISREG(st.st_mode))
		return cli_usage(c, "%s %s is %s; keybroker rewrap writes only to a regular file it names directly",
				 w->what, w->path, S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file");
	w->fd = open(w->path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (w->fd < 0 && errno == ENOENT) {
		w->fd = open(w->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		w->created = w->fd >= 0;
	}
	if (w->fd < 0 && errno == ELOOP)
		return cli_usage(c, "%s %s is a symbolic link; keybroker rewrap writes only to a regular file it names directly",
				 w->what, w->path);
	if (w->fd < 0)
		return cli_fail(KB_E_IO, "cannot open %s %s: %s", w->what, w->path, strerror(errno));
	if (fstat(w->fd, &w->st) != 0)
		return cli_fail(KB_E_IO, "cannot inspect %s %s: %s", w->what, w->path, strerror(errno));
	if (!S_ISREG(w->st.st_mode))
		return cli_usage(c, "%s %s is not a regular file; keybroker rewrap writes only to a regular file",
				 w->what, w->path);
	return CLI_EXIT_OK;
}

/* distinct refuses when two of the n files are one file, the first pair found named. */
static int distinct(cli *c, const named *f, int n)
{
	for (int i = 0; i < n; i++)
		for (int k = i + 1; k < n; k++)
			if (f[i].st && f[k].st && same_file(f[i].st, f[k].st))
				return cli_usage(c, "%s %s is the same file as %s %s: keybroker rewrap never writes a file "
						 "it reads, nor one file twice; name another file", f[k].what, f[k].path,
						 f[i].what, f[i].path);
	return CLI_EXIT_OK;
}

/* digest_hex writes the SHA-256 of s[0..n) in hex and a NUL to hex (HEX_LEN + 1 bytes). */
static bool digest_hex(const char *s, size_t n, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	return EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL) == 1 &&
	       OPENSSL_buf2hexstr_ex(hex, HEX_LEN + 1, NULL, md, mdlen, '\0') == 1;
}

ssize_t rwf_read_line(FILE *in, char **line, size_t *cap)
{
	ssize_t len = getline(line, cap, in);

	while (len > 0 && isspace((unsigned char)(*line)[len - 1]))
		(*line)[--len] = '\0';
	return len;
}

/* header writes the journal's first line for c's options to buf. */
static void header(const cli *c, char *buf, size_t cap)
{
	const char *key = cli_optval(c, "key"), *to = cli_optval(c, "to-version");

	snprintf(buf, cap, JOURNAL_MAGIC " key=%s to-version=%s\n", key ? key : "", to ? to : "");
}

/* is_journal says whether the first line of the journal, read into line, is one of ours. */
static bool is_journal(const char *line)
{
	return strncmp(line, JOURNAL_MAGIC " ", strlen(JOURNAL_MAGIC) + 1) == 0;
}

/* record_ok says whether r (a journal line with its newline) is a record: "S IN OUT". */
static bool record_ok(const char *r, ssize_t n)
{
	if (n != RECORD_LEN || (r[0] != RWF_MOVED && r[0] != RWF_ALREADY && r[0] != RWF_FAILED) || r[1] != ' ' ||
	    r[2 + HEX_LEN] != ' ' || r[RECORD_LEN - 1] != '\n')
		return false;
	for (int i = 2; i < RECORD_LEN - 1; i++)
		if (i != 2 + HEX_LEN && !isxdigit((unsigned char)r[i]))
			return false;
	return true;
}

/*
 * resume checks each line --out holds against its journal record and the
 * input line it answers, reading the three in step, and cuts --out and the
 * journal back to the proven lines. The journal's header has been read.
 */
static int resume(cli *c, rwf *f, const char *in_name, const char *out_path, long jpos)
{
	char *ol = NULL, *jl = NULL, *il = NULL, hex[HEX_LEN + 1];
	size_t ocap = 0, jcap = 0, icap = 0, i;
	long opos = 0;
	ssize_t on, jn, in_n;
	int r = CLI_EXIT_OK;

	for (i = 1;; i++) {
		if ((on = getline(&ol, &ocap, f->out)) < 0)
			break;
		jn = getline(&jl, &jcap, f->journal);
		if (jn < 0 || jl[jn - 1] != '\n') {
			r = cli_usage(c, "%s line %zu is not in its journal %s (it vouches for %zu lines): keybroker rewrap did "
				      "not write it, so %s is not known to be this input's output; give another --out",
				      out_path, i, f->journal_path, i - 1, out_path);
			goto done;
		}
		if (!record_ok(jl, jn)) {
			r = cli_usage(c, "%s line %zu is damaged; give another --out", f->journal_path, i + 1);
			goto done;
		}
		if (ol[on - 1] != '\n')
			break; /* the line a crash left unfinished: its record is there, it is done again */
		if ((in_n = rwf_read_line(f->in, &il, &icap)) < 0) {
			r = cli_usage(c, "%s line %zu answers an input line %zu, but %s has only %zu lines: %s is not this "
				      "input's output; give another --out", out_path, i, i, in_name, i - 1, out_path);
			goto done;
		}
		if (!digest_hex(il, (size_t)in_n, hex) || strncasecmp(hex, jl + 2, HEX_LEN) != 0) {
			r = cli_usage(c, "%s line %zu answers another line than line %zu of %s: %s is not this input's "
				      "output; give another --out", out_path, i, i, in_name, out_path);
			goto done;
		}
		if (!digest_hex(ol, (size_t)on - 1, hex) || strncasecmp(hex, jl + 3 + HEX_LEN, HEX_LEN) != 0) {
			r = cli_usage(c, "%s line %zu is not the line keybroker rewrap wrote there (it changed since); give "
				      "another --out", out_path, i);
			goto done;
		}
		f->resumed_failed += jl[0] == RWF_FAILED;
		opos += (long)on;
		jpos += (long)jn;
	}
	f->resumed = i - 1;
	if (ftruncate(fileno(f->out), opos) != 0 || ftruncate(fileno(f->journal), jpos) != 0)
		r = cli_fail(KB_E_IO, "cannot cut %s back to the %zu lines it proves: %s", out_path, f->resumed,
			     strerror(errno));
	else if (fseek(f->out, 0, SEEK_END) != 0 || fseek(f->journal, 0, SEEK_END) != 0)
		r = cli_fail(KB_E_IO, "cannot seek %s: %s", out_path, strerror(errno));
done:
	free(ol);
	free(jl);
	free(il);
	return r;
}

/*
 * start_journal readies the journal of out (w, the journal): a new run
 * writes its header; an --out with lines is resumed.
 */
static int start_journal(cli *c, rwf *f, const wfile *out, const wfile *w, const char *in_name)
{
	char want[512], *line = NULL;
	size_t cap = 0;
	ssize_t n = w->st.st_size > 0 ? getline(&line, &cap, f->journal) : -1;
	int r = CLI_EXIT_OK;

	header(c, want, sizeof(want));
	if (n > 0 && !is_journal(line)) {
		r = cli_usage(c, "%s exists and is no journal of keybroker rewrap; move it away, or give another --out",
			      w->path);
	} else if (out->st.st_size == 0) {
		/* a new run: whatever the journal held is of an --out that is empty now */
		if (ftruncate(fileno(f->journal), 0) != 0 || fseek(f->journal, 0, SEEK_SET) != 0 || fputs(want, f->journal) < 0 ||
		    fflush(f->journal) != 0)
			r = cli_fail(KB_E_IO, "cannot write %s: %s", w->path, strerror(errno));
	} else if (n <= 0) {
		r = cli_usage(c, "%s holds lines, but no journal (%s) says which input they answer, so they are not "
			      "known to be this input's output; give another --out, or remove %s to start over",
			      out->path, w->path, out->path);
	} else if (strcmp(line, want) != 0) {
		r = cli_usage(c, "%s was written by a run with other options (its journal says: %.*s); run again with "
			      "those, or give another --out", out->path, (int)(strcspn(line, "\n") - strlen(JOURNAL_MAGIC) - 1),
			      line + strlen(JOURNAL_MAGIC) + 1);
	} else {
		r = resume(c, f, in_name, out->path, (long)n);
	}
	free(line);
	return r;
}

/* open_in opens the input, a path or stdin ("-"), into f->in and *st. */
static int open_in(cli *c, rwf *f, const char *path, struct stat *st)
{
	int fd = STDIN_FILENO;

	if (strcmp(path, "-") == 0) {
		if (isatty(STDIN_FILENO))
			return cli_usage(c, "give the blobs, one per line, in --in FILE or on stdin (a pipe or a file), "
					 "not typed at a terminal");
		f->in = stdin;
	} else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || (f->in = fdopen(fd, "r")) == NULL) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return cli_fail(KB_E_IO, "cannot open %s: %s", path, strerror(e));
	}
	if (fstat(fd, st) != 0)
		return cli_fail(KB_E_IO, "cannot inspect %s: %s", path, strerror(errno));
	return CLI_EXIT_OK;
}

/* as_file wraps w's descriptor in f's FILE *dst. */
static int as_file(wfile *w, FILE **dst)
{
	if ((*dst = fdopen(w->fd, "r+")) == NULL)
		return cli_fail(KB_E_IO, "cannot open %s %s: %s", w->what, w->path, strerror(errno));
	w->fd = -1; /* the FILE owns it now */
	return CLI_EXIT_OK;
}

int rwf_open(cli *c, rwf *f)
{
	const char *in_path = cli_optval(c, "in"), *out_path = cli_optval(c, "out");
	const char *failed_path = cli_optval(c, "failed");
	const char *in_name = strcmp(in_path, "-") == 0 ? "stdin" : in_path;
	wfile out = { out_path, "--out", -1, false, { 0 } }, failed = { failed_path, "--failed", -1, false, { 0 } };
	wfile jw = { NULL, "the journal of --out", -1, false, { 0 } };
	struct stat in_st, stdout_st;
	bool have_stdout = out_path == NULL && fstat(STDOUT_FILENO, &stdout_st) == 0 && S_ISREG(stdout_st.st_mode);
	int r, fd;

	memset(f, 0, sizeof(*f));
	f->out = stdout;
	if ((r = open_in(c, f, in_path, &in_st)) != CLI_EXIT_OK)
		goto fail;
	if (out_path) {
		if (asprintf(&f->journal_path, "%s.journal", out_path) < 0) {
			f->journal_path = NULL;
			r = cli_fail(KB_E_IO, "out of memory");
			goto fail;
		}
		jw.path = f->journal_path;
		if ((r = open_written(c, &out)) != CLI_EXIT_OK || (r = open_written(c, &jw)) != CLI_EXIT_OK)
			goto fail;
	}
	if (failed_path && (r = open_written(c, &failed)) != CLI_EXIT_OK)
		goto fail;
	{
		named files[] = {
			{ "--in", in_name, &in_st },
			{ "stdout", "(redirected)", have_stdout ? &stdout_st : NULL },
			{ "--out", out_path, out_path ? &out.st : NULL },
			{ "the journal of --out", jw.path, out_path ? &jw.st : NULL },
			{ "--failed", failed_path, failed_path ? &failed.st : NULL },
		};

		if ((r = distinct(c, files, (int)(sizeof(files) / sizeof(files[0])))) != CLI_EXIT_OK)
			goto fail;
	}
	if (out_path) {
		if ((r = as_file(&out, &f->out)) != CLI_EXIT_OK || (r = as_file(&jw, &f->journal)) != CLI_EXIT_OK ||
		    (r = start_journal(c, f, &out, &jw, in_name)) != CLI_EXIT_OK)
			goto fail;
	}
	if (failed_path) {
		/* a new run starts --failed afresh; a resumed one adds to the list of the run before */
		fd = failed.fd;
		if ((r = as_file(&failed, &f->failed)) != CLI_EXIT_OK)
			goto fail;
		if ((f->resumed == 0 && ftruncate(fd, 0) != 0) || fseek(f->failed, 0, SEEK_END) != 0) {
			r = cli_fail(KB_E_IO, "cannot write --failed %s: %s", failed_path, strerror(errno));
			goto fail;
		}
	}
	return CLI_EXIT_OK;
fail:
	for (wfile **w = (wfile *[]){ &out, &jw, &failed, NULL }; *w; w++) {
		if ((*w)->fd >= 0)
			close((*w)->fd);
		if ((*w)->created)
			unlink((*w)->path);
	}
	if (f->out == stdout)
		f->out = NULL;
	rwf_close(f);
	return r;
}

/* write_records writes and flushes the journal records of n answered lines. */
static bool write_records(rwf *f, size_t n, char *const *in, char *const *out, const char *status)
{
	char hi[HEX_LEN + 1], ho[HEX_LEN + 1];

	for (size_t i = 0; i < n; i++)
		if (!digest_hex(in[i], strlen(in[i]), hi) || !digest_hex(out[i], strlen(out[i]), ho) ||
		    fprintf(f->journal, "%c %s %s\n", status[i], hi, ho) < 0)
			return false;
	return fflush(f->journal) == 0 && !ferror(f->journal);
}

bool rwf_write(rwf *f, size_t n, char *const *in, char *const *out, const char *status)
{
	if (f->journal && !write_records(f, n, in, out, status))
		return false;
	for (size_t i = 0; i < n; i++) {
		fprintf(f->out, "%s\n", out[i]);
		if (f->failed && status[i] == RWF_FAILED)
			fprintf(f->failed, "%s\n", in[i]);
	}
	return fflush(f->out) == 0 && !ferror(f->out) && (!f->failed || (fflush(f->failed) == 0 && !ferror(f->failed)));
}

/* close_written syncs and closes one written file (not stdout); false if either failed. */
static bool close_written(FILE *w)
{
	bool ok = fflush(w) == 0 && fsync(fileno(w)) == 0;

	return fclose(w) == 0 && ok;
}

bool rwf_close(rwf *f)
{
	bool ok = true;

	if (f->journal)
		ok = close_written(f->journal) && ok;
	if (f->out && f->out != stdout)
		ok = close_written(f->out) && ok;
	if (f->failed)
		ok = close_written(f->failed) && ok;
	if (f->in && f->in != stdin)
		fclose(f->in);
	free(f->journal_path);
	memset(f, 0, sizeof(*f));
	return ok;
}

/*
 * rewrap_files.h: the files of a bulk rewrap (rewrap_bulk.h): the input,
 * --out, --failed and --out's journal.
 *
 * Contract:
 *  - rwf_open opens the input (a path, or stdin for "-") to read, and --out,
 *    --failed and the journal OUT.journal to write. It never writes a file
 *    the command reads: the written files are opened without following a
 *    symbolic link (one is refused), without truncating, and are refused when
 *    any two of them, the input or a redirected stdout are one file (by
 *    device and inode: ./in.txt, a hard link, `>> in.txt`). A refused file
 *    is left as it was; a file rwf_open created is removed again.
 *  - The journal proves --out line by line. Its first line names the run's
 *    --key and --to-version; then, for each line of --out, in order, one
 *    record: whether the line moved (m), was already under --to-version (a)
 *    or failed and was written unchanged (f), the SHA-256 of the input line it
 *    answers and the SHA-256 of the --out line. A record is written and
 *    flushed before its --out line, so --out never holds a line its journal
 *    does not vouch for.
 *  - With an --out that holds lines, rwf_open resumes: it reads the input,
 *    --out and the journal in step, checks every line --out holds against
 *    both, and skips those input lines (rwf.resumed). It refuses, naming the
 *    first line that differs, an --out with lines but no journal, a journal
 *    of other options, an --out line that answers another input line or was
 *    changed, and an --out line the journal has no record of; then nothing
 *    is written. Past the proven lines it cuts only what is its own: a last
 *    --out line a crash left unfinished, and journal records whose line never
 *    reached --out.
 *  - rwf_write writes answered lines: their records (flushed), then the lines
 *    to --out (or stdout), and each failed input line to --failed.
 */
#ifndef KB_REWRAP_FILES_H
#define KB_REWRAP_FILES_H

#include <stdbool.h>
#include <stdio.h>

#include "cli.h"

/* What became of an input line, as the journal records it. */
#define RWF_MOVED 'm'
#define RWF_ALREADY 'a'
#define RWF_FAILED 'f'

typedef struct rwf {
	FILE *in, *out, *failed, *journal; /* out is stdout without --out; journal then NULL */
	char *journal_path;
	size_t resumed;        /* input lines --out already answers, skipped */
	size_t resumed_failed; /* of those, lines that failed in the earlier run */
} rwf;

/* rwf_open opens f's files for c's --in, --out and --failed as above; returns the exit status (0: go on). */
int rwf_open(cli *c, rwf *f);

/*
 * rwf_read_line reads the next input line into *line (getline's buffer),
 * without its newline and trailing blanks: a last line without a newline is
 * whole. Returns its length, or -1 at the end of the input.
 */
ssize_t rwf_read_line(FILE *in, char **line, size_t *cap);

/*
 * rwf_write writes n answered lines: for each i, input line in[i] became
 * out[i] with status[i] (RWF_*). Returns false on a write error.
 */
bool rwf_write(rwf *f, size_t n, char *const *in, char *const *out, const char *status);

/* rwf_close syncs what was written to disk and closes everything; false if a sync failed. */
bool rwf_close(rwf *f);

#endif

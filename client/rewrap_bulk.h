/*
 * rewrap_bulk.h: `keybroker rewrap --in FILE|-`, the bulk re-encryption of
 * stored blobs to a key's new version, a deliberate job run after a rotation.
 *
 * Contract: reads blobs one per line and writes the new blob of each line,
 * in the same order, to --out (or stdout). A line that fails is written
 * unchanged, listed in --failed, and makes the exit status 1; the run goes
 * on. Lines go to the broker in batches on --concurrency connections, and a
 * line the key service throttled or could not answer is sent again with
 * backoff before it counts as failed, so the run moves at the service's
 * speed. The files are rewrap_files.h's: never a write to a file read, and
 * with --out, a rerun resumes past the lines --out's journal proves are this
 * input's. The exit status is not 0 whenever a line was not moved, in this
 * run or an earlier one it resumes. Only blobs are read and written: the
 * broker never sends a DEK for a rewrap, and none is ever written anywhere.
 */
#ifndef KB_REWRAP_BULK_H
#define KB_REWRAP_BULK_H

#include "cli.h"

/* rewrap_bulk runs the job c describes (its --in is set); returns the exit status. */
int rewrap_bulk(cli *c);

#endif

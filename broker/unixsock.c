/*
 * unixsock.c: a listening Unix socket with a private mode (see unixsock.h).
 */
#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "unixsock.h"

static kb_code check_socket_dir(const char *path, kb_err *err)
{
	char *copy = strdup(path);
	struct stat st;
	kb_code rc = KB_OK;

	if (copy == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	if (stat(dirname(copy), &st) != 0)
		rc = kb_err_set(err, KB_E_BAD_REQUEST, "socket directory of %s: %s", path, strerror(errno));
	else if (st.st_mode & S_IWOTH)
		rc = kb_err_set(err, KB_E_BAD_REQUEST,
				"refusing socket %s: its directory is writable by every user, who could "
				"replace the socket; use a private directory such as /run/keybroker",
				path);
	free(copy);
	return rc;
}

/* take_stale_socket removes path if it is a socket nobody answers on. */
static kb_code take_stale_socket(const char *path, kb_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kb_err_set(err, KB_E_INTERNAL, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		return kb_err_set(err, KB_E_BUSY,
				  "another keybrokerd is already serving %s: stop it first, or set a different socket",
				  path);
	}
	close(fd);
	if (errno != ECONNREFUSED && errno != ENOENT)
		return kb_err_set(err, KB_E_INTERNAL, "cannot check %s: %s", path, strerror(errno));
	if (errno == ECONNREFUSED) {
		kb_info("replacing the stale socket %s", path);
		if (unlink(path) != 0)
			return kb_err_set(err, KB_E_INTERNAL, "cannot remove the stale socket %s: %s", path,
					  strerror(errno));
	}
	return KB_OK;
}

/*
 * bind_listen binds fd to path under a private umask, then sets group and
 * mode, and listens; a failure after the bind removes the file it made.
 */
static kb_code bind_listen(int fd, const char *path, mode_t mode, const char *group, kb_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int rc;
	kb_code code = KB_OK;

	strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	/* no moment when the socket exists with a looser mode than ours */
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc != 0)
		return kb_err_set(err, KB_E_INTERNAL, "cannot bind %s: %s", path, strerror(errno));
	if (group) {
		struct group *g = getgrnam(group);
		if (g == NULL || chown(path, (uid_t)-1, g->gr_gid) != 0)
			code = kb_err_set(err, KB_E_BAD_REQUEST, "cannot give socket %s to group %s: %s", path,
					  group, g ? strerror(errno) : "no such group");
	}
	if (code == KB_OK && chmod(path, mode) != 0)
		code = kb_err_set(err, KB_E_INTERNAL, "cannot set the mode of %s: %s", path, strerror(errno));
	if (code == KB_OK && listen(fd, SOMAXCONN) != 0)
		code = kb_err_set(err, KB_E_INTERNAL, "cannot listen on %s: %s", path, strerror(errno));
	if (code != KB_OK)
		unlink(path);
	return code;
}

kb_code kb_unix_listen(const char *path, mode_t mode, const char *group, int *fd, kb_err *err)
{
	struct stat st;
	kb_code rc;

	*fd = -1;
	if ((rc = check_socket_dir(path, err)) != KB_OK)
		return rc;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return kb_err_set(err, KB_E_BAD_REQUEST, "%s exists and is not a socket: refusing to replace it", path);
		if ((rc = take_stale_socket(path, err)) != KB_OK)
			return rc;
	}
	*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return kb_err_set(err, KB_E_INTERNAL, "socket: %s", strerror(errno));
	if ((rc = bind_listen(*fd, path, mode, group, err)) != KB_OK) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

/*
 * unit.h: what the unit tests of tests/unit share beside the runner
 * (tests/cases.h, which it includes).
 */
#ifndef KB_TEST_UNIT_H
#define KB_TEST_UNIT_H

#include <linux/capability.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../cases.h"

/* unit_in_child runs fn in a forked child and returns its wait status. */
static inline int unit_in_child(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* no core files from the crashes we cause on purpose */
		static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGSYS };
		struct rlimit none = { 0, 0 };

		setrlimit(RLIMIT_CORE, &none);
		/* the child must die of the signal, not return into cmocka's handler */
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static inline void unit_expect_exit_0(int status)
{
	if (!WIFEXITED(status))
		fail_msg("child died by signal %d", WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("child exited %d", WEXITSTATUS(status));
}

/* unit_lose_ipc_lock drops CAP_IPC_LOCK, which lets root lock past RLIMIT_MEMLOCK. */
static inline void unit_lose_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) != 0)
		_exit(4);
	data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	data[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
	data[CAP_IPC_LOCK / 32].inheritable &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &hdr, data) != 0)
		_exit(4);
}

/* unit_hex writes p[0..n) as lowercase hex and a NUL to out (2n+1 bytes). */
static inline void unit_hex(const uint8_t *p, size_t n, char *out)
{
	static const char h[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = h[p[i] >> 4];
		out[2 * i + 1] = h[p[i] & 15];
	}
	out[2 * n] = '\0';
}

#endif

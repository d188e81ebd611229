/*
 * allocfail.c: kballocfail, an LD_PRELOAD library that makes the Nth
 * allocation of keybrokerd's own code fail, SQLite style, and counts the
 * allocations alive, so a test can show a failed request leaks nothing.
 *
 *   KB_ALLOCFAIL_CONTROL  a file holding "fail N SEQ" or "off SEQ"
 *   KB_ALLOCFAIL_ACK      the file it answers in: "SEQ live L own O failed F left C"
 *
 * On SIGUSR2 it reads the control file: "fail N" arms it, so the Nth
 * allocation from here on whose caller is keybrokerd itself or libcjson (the
 * daemon's JSON, through its hooks) returns NULL with ENOMEM, once; "off"
 * disarms it. Either way it then writes the ack: SEQ as given, L the
 * allocations alive in the whole process, O those of them made by the
 * daemon's own code or libcjson (the ones a request of its could leak), F how many it failed since the last
 * "fail", C how many eligible allocations were left before the failure (0
 * once it happened). Allocations of other libraries (OpenSSL, the PKCS#11
 * module, which is C++ and would throw) are counted alive but never failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t k, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);

#define MAX_RANGES 16

static struct {
	uintptr_t lo, hi;
} ranges[MAX_RANGES];
static int nranges;
#define SET_SLOTS (1 << 18)

static atomic_long left;   /* > 0: eligible allocations until the failing one */
static atomic_long own;    /* allocations of the daemon's own code alive (in the set) */
static atomic_long lost;   /* own allocations the set had no room for */
static atomic_flag set_lock = ATOMIC_FLAG_INIT;
static void *set[SET_SLOTS]; /* open addressing; (void *)1 marks a removed slot */
static atomic_long live;
static atomic_long failed;
static const char *ctl_path, *ack_path;

/* add_ranges records the executable segments of the program and of libcjson. */
static int add_ranges(struct dl_phdr_info *info, size_t size, void *arg)
{
	const char *name = info->dlpi_name;
	int self = name == NULL || name[0] == '\0';

	if (!self && strstr(name, "libcjson") == NULL)
		return 0;
	for (int i = 0; i < info->dlpi_phnum && nranges < MAX_RANGES; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			ranges[nranges].lo = info->dlpi_addr + ph->p_vaddr;
			ranges[nranges].hi = ranges[nranges].lo + ph->p_memsz;
			nranges++;
		}
	}
	return 0;
}

static int is_own(const void *caller)
{
	uintptr_t a = (uintptr_t)caller;

	for (int i = 0; i < nranges; i++)
		if (a >= ranges[i].lo && a < ranges[i].hi)
			return 1;
	return 0;
}

static size_t slot_of(const void *p)
{
	return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 46) & (SET_SLOTS - 1);
}

/* set_add records p as the daemon's own allocation. */
static void set_add(void *p)
{
	size_t i = slot_of(p);

	while (atomic_flag_test_and_set_explicit(&set_lock, memory_order_acquire))
		;
	for (size_t k = 0; k < SET_SLOTS; k++, i = (i + 1) & (SET_SLOTS - 1)) {
		if (set[i] == NULL || set[i] == (void *)1) {
			set[i] = p;
			atomic_fetch_add(&own, 1);
			atomic_flag_clear_explicit(&set_lock, memory_order_release);
			return;
		}
	}
	atomic_fetch_add(&lost, 1);
	atomic_flag_clear_explicit(&set_lock, memory_order_release);
}

/* set_remove forgets p if it is there. */
static void set_remove(void *p)
{
	size_t i = slot_of(p);

	while (atomic_flag_test_and_set_explicit(&set_lock, memory_order_acquire))
		;
	for (size_t k = 0; k < SET_SLOTS && set[i] != NULL; k++, i = (i + 1) & (SET_SLOTS - 1)) {
		if (set[i] == p) {
			set[i] = (void *)1;
			atomic_fetch_sub(&own, 1);
			break;
		}
	}
	atomic_flag_clear_explicit(&set_lock, memory_order_release);
}

/* should_fail counts an eligible allocation and says whether it is the one to fail. */
static int should_fail(const void *caller)
{
	long n;

	if (atomic_load_explicit(&left, memory_order_relaxed) <= 0 || !is_own(caller))
		return 0;
	n = atomic_fetch_sub(&left, 1);
	if (n == 1) {
		atomic_fetch_add(&failed, 1);
		errno = ENOMEM;
		return 1;
	}
	if (n <= 0)
		atomic_fetch_add(&left, 1);
	return 0;
}

void *malloc(size_t n)
{
	void *p;

	const void *caller = __builtin_return_address(0);

	if (should_fail(caller))
		return NULL;
	p = __libc_malloc(n);
	if (p) {
		atomic_fetch_add(&live, 1);
		if (is_own(caller))
			set_add(p);
	}
	return p;
}

void *calloc(size_t k, size_t n)
{
	void *p;

	const void *caller = __builtin_return_address(0);

	if (should_fail(caller))
		return NULL;
	p = __libc_calloc(k, n);
	if (p) {
		atomic_fetch_add(&live, 1);
		if (is_own(caller))
			set_add(p);
	}
	return p;
}

void *realloc(void *old, size_t n)
{
	void *p;

	const void *caller = __builtin_return_address(0);

	if (old != NULL && n == 0) {
		free(old);
		return NULL;
	}
	if (should_fail(caller))
		return NULL;
	p = __libc_realloc(old, n);
	if (p == NULL)
		return NULL;
	if (old == NULL)
		atomic_fetch_add(&live, 1);
	else if (p != old)
		set_remove(old);
	else
		return p;
	if (is_own(caller))
		set_add(p);
	return p;
}

void free(void *p)
{
	if (p == NULL)
		return;
	atomic_fetch_sub(&live, 1);
	if (atomic_load_explicit(&own, memory_order_relaxed) > 0)
		set_remove(p);
	__libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	if (p == NULL)
		return ENOMEM;
	atomic_fetch_add(&live, 1);
	*out = p;
	return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	if (p)
		atomic_fetch_add(&live, 1);
	return p;
}

void *memalign(size_t align, size_t n)
{
	return aligned_alloc(align, n);
}

/* put_num appends v in decimal to out at *len: snprintf is not async-signal-safe. */
static void put_num(char *out, int *len, long v)
{
	char d[24];
	int n = 0;

	if (v < 0) {
		out[(*len)++] = '-';
		v = -v;
	}
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (n > 0)
		out[(*len)++] = d[--n];
}

static void put_str(char *out, int *len, const char *s)
{
	while (*s)
		out[(*len)++] = *s++;
}

/* on_usr2 reads the control file and writes the ack; only async-signal-safe calls. */
static void on_usr2(int sig)
{
	char buf[128], out[160];
	int fd, len, e = errno;
	long n = 0, seq = 0;
	char *p = buf;

	(void)sig;
	fd = open(ctl_path, O_RDONLY | O_CLOEXEC);
	len = fd >= 0 ? (int)read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	buf[len > 0 ? len : 0] = '\0';
	if (strncmp(buf, "fail ", 5) == 0) {
		p = buf + 5;
		while (*p >= '0' && *p <= '9')
			n = n * 10 + (*p++ - '0');
		atomic_store(&failed, 0);
		atomic_store(&left, n);
	} else {
		atomic_store(&left, 0);
		p = strchr(buf, ' ') ? strchr(buf, ' ') : buf + strlen(buf);
	}
	while (*p == ' ')
		p++;
	while (*p >= '0' && *p <= '9')
		seq = seq * 10 + (*p++ - '0');
	len = 0;
	put_num(out, &len, seq);
	put_str(out, &len, " live ");
	put_num(out, &len, atomic_load(&live));
	put_str(out, &len, " own ");
	put_num(out, &len, atomic_load(&own) + atomic_load(&lost));
	put_str(out, &len, " failed ");
	put_num(out, &len, atomic_load(&failed));
	put_str(out, &len, " left ");
	put_num(out, &len, atomic_load(&left) > 0 ? atomic_load(&left) : 0);
	put_str(out, &len, "\n");
	fd = open(ack_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (write(fd, out, (size_t)len) < 0) {
			/* the test times out waiting for the ack */
		}
		close(fd);
	}
	errno = e;
}

__attribute__((constructor)) static void allocfail_init(void)
{
	struct sigaction sa;

	ctl_path = getenv("KB_ALLOCFAIL_CONTROL");
	ack_path = getenv("KB_ALLOCFAIL_ACK");
	if (ctl_path == NULL || ack_path == NULL)
		return;
	dl_iterate_phdr(add_ranges, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
}

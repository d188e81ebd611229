#include <stdatomic.h>
#include <time.h>

#include "clock.h"
#include "emu.h"

/* read on every request by many threads, written only by the admin endpoint */
static _Atomic int64_t offset;

int64_t emu_clock_offset(void)
{
	return atomic_load(&offset);
}

void emu_clock_set_offset(int64_t seconds)
{
	atomic_store(&offset, seconds > 0 ? seconds : 0);
}

int emu_clock_advance(int64_t seconds)
{
	if (seconds < 0 || seconds > EMU_CLOCK_STEP_MAX)
		return -1;
	atomic_fetch_add(&offset, seconds);
	return 0;
}

int64_t emu_clock_real(void)
{
	return (int64_t)time(NULL);
}

int64_t emu_now(void)
{
	return (int64_t)time(NULL) + atomic_load(&offset);
}

int64_t emu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

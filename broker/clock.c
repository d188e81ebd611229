/*
 * clock.c: the monotonic clock (see clock.h).
 */
#include <time.h>

#include "clock.h"

int64_t kb_now_ms(void)
{
	return kb_now_us() / 1000;
}

int64_t kb_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * bench_hist.c: a log-linear latency histogram, HdrHistogram's idea in a
 * fixed array: exact below 128 ns, then 64 buckets per power of two.
 */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "bench.h"

void bench_hist_init(bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

size_t bench_hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * BENCH_HIST_HALF)
		return (size_t)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - BENCH_HIST_BITS + 1;
	return (size_t)shift * BENCH_HIST_HALF + (size_t)(v >> shift);
}

uint64_t bench_hist_top(size_t i)
{
	size_t shift, mant;

	assert(i < BENCH_HIST_BUCKETS);
	if (i < 2 * BENCH_HIST_HALF)
		return i;
	shift = i / BENCH_HIST_HALF - 1;
	mant = i % BENCH_HIST_HALF + BENCH_HIST_HALF;
	/* the last bucket's top wraps to UINT64_MAX, as it should */
	return ((uint64_t)(mant + 1) << shift) - 1;
}

void bench_hist_add(bench_hist *h, uint64_t v)
{
	h->bucket[bench_hist_index(v)]++;
	h->count++;
	h->sum += (double)v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
	if (src->count == 0)
		return;
	for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t bench_hist_pct(const bench_hist *h, double p)
{
	uint64_t rank, seen = 0, top;

	if (h->count == 0)
		return 0;
	/* the epsilon keeps 99.9% of 1000 at rank 999 despite rounding */
	rank = (uint64_t)ceil(p * (double)h->count / 100.0 - 1e-7);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			top = bench_hist_top(i);
			return top < h->max ? top : h->max;
		}
	}
	return h->max;
}

/*
 * test_hist.c: the benchmark's histogram against samples whose percentiles
 * are known.
 */
#include "../cases.h"

#include "bench.h"

static bench_hist h;

static void fill(uint64_t from, uint64_t to, uint64_t step)
{
	bench_hist_init(&h);
	for (uint64_t v = from; v <= to; v += step)
		bench_hist_add(&h, v);
}

/* within says got is the true value or above it by at most the bucket width (1/64). */
static void within(uint64_t got, uint64_t want)
{
	assert_true(got >= want);
	assert_true((double)got <= (double)want * (1.0 + 1.0 / 64.0));
}

static void percentiles_below_128_are_exact(void **state)
{
	fill(1, 100, 1);
	assert_int_equal(bench_hist_pct(&h, 50), 50);
	assert_int_equal(bench_hist_pct(&h, 90), 90);
	assert_int_equal(bench_hist_pct(&h, 99), 99);
	assert_int_equal(bench_hist_pct(&h, 99.9), 100);
	assert_int_equal(bench_hist_pct(&h, 100), 100);
	assert_int_equal(h.min, 1);
	assert_int_equal(h.max, 100);
	assert_int_equal(h.count, 100);
}

static void percentiles_of_1_to_1000_microseconds_are_within_a_bucket(void **state)
{
	fill(1000, 1000000, 1000);
	within(bench_hist_pct(&h, 50), 500000);
	within(bench_hist_pct(&h, 90), 900000);
	within(bench_hist_pct(&h, 99), 990000);
	within(bench_hist_pct(&h, 99.9), 999000);
	assert_int_equal(bench_hist_pct(&h, 100), 1000000);
}

static void p999_of_1000_samples_is_the_999th(void **state)
{
	fill(1, 1000, 1);
	within(bench_hist_pct(&h, 99.9), 999);
	assert_true(bench_hist_pct(&h, 99.9) < 1000 || bench_hist_top(bench_hist_index(999)) >= 1000);
	assert_int_equal(bench_hist_pct(&h, 100), 1000);
}

static void a_skewed_sample_puts_the_tail_in_p99(void **state)
{
	bench_hist_init(&h);
	for (int i = 0; i < 980; i++)
		bench_hist_add(&h, 10000);       /* 10 us */
	for (int i = 0; i < 20; i++)
		bench_hist_add(&h, 5000000);     /* 5 ms */
	within(bench_hist_pct(&h, 50), 10000);
	within(bench_hist_pct(&h, 90), 10000);
	within(bench_hist_pct(&h, 99), 5000000);
	assert_int_equal(bench_hist_pct(&h, 100), 5000000);
	assert_true(h.sum / (double)h.count > 100000);
}

static void empty_histogram_reports_zero_and_one_sample_reports_itself(void **state)
{
	bench_hist_init(&h);
	assert_int_equal(bench_hist_pct(&h, 50), 0);
	bench_hist_add(&h, 123456);
	assert_int_equal(bench_hist_pct(&h, 50), 123456);
	assert_int_equal(bench_hist_pct(&h, 99.9), 123456);
}

static void every_value_lands_in_a_bucket_no_wider_than_1_in_64(void **state)
{
	for (uint64_t v = 1; v < (1ull << 62); v = v * 3 / 2 + 1) {
		size_t i = bench_hist_index(v);
		uint64_t top = bench_hist_top(i), low = i ? bench_hist_top(i - 1) + 1 : 0;

		assert_true(i < BENCH_HIST_BUCKETS);
		assert_true(low <= v && v <= top);
		assert_true((double)(top - low) <= (double)v / 64.0 + 1);
	}
	assert_int_equal(bench_hist_index(UINT64_MAX), BENCH_HIST_BUCKETS - 1);
	assert_true(bench_hist_top(BENCH_HIST_BUCKETS - 1) == UINT64_MAX);
}

static void merged_histograms_equal_one_fed_all_samples(void **state)
{
	static bench_hist a, b;

	bench_hist_init(&a);
	bench_hist_init(&b);
	fill(1, 5000, 3);
	for (uint64_t v = 1; v <= 5000; v += 3)
		bench_hist_add(v % 2 ? &a : &b, v);
	bench_hist_merge(&a, &b);
	assert_int_equal(a.count, h.count);
	assert_int_equal(a.min, h.min);
	assert_int_equal(a.max, h.max);
	assert_memory_equal(a.bucket, h.bucket, sizeof(h.bucket));
	assert_int_equal(bench_hist_pct(&a, 99), bench_hist_pct(&h, 99));
}

static const struct CMUnitTest tests[] = {
	CASE(percentiles_below_128_are_exact, "bench - histogram percentiles below 128 are exact"),
	CASE(percentiles_of_1_to_1000_microseconds_are_within_a_bucket, "bench - histogram percentiles of 1 to 1000 microseconds are within a bucket"),
	CASE(p999_of_1000_samples_is_the_999th, "bench - histogram p99.9 of 1000 samples is the 999th"),
	CASE(a_skewed_sample_puts_the_tail_in_p99, "bench - histogram of a skewed sample puts the tail in p99"),
	CASE(empty_histogram_reports_zero_and_one_sample_reports_itself, "bench - an empty histogram reports zero and one sample reports itself"),
	CASE(every_value_lands_in_a_bucket_no_wider_than_1_in_64, "bench - histogram every value lands in a bucket no wider than 1 in 64"),
	CASE(merged_histograms_equal_one_fed_all_samples, "bench - merged histograms equal one fed all samples"),
};

CASES_MAIN("bench_hist", tests, NULL, NULL)

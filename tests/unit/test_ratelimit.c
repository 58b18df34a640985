/* test_ratelimit.c -- token bucket arithmetic on an injected clock; backoff
 * growth, cap, jitter bounds and reset. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "../../core/ratelimit.h"

#define EPS 1e-9

START_TEST(bucket_starts_full_then_waits)
{
    struct tokenbucket tb;
    tokenbucket_init(&tb, 5, 10, 100.0);
    for (int i = 0; i < 10; i++)
        ck_assert_double_eq(tokenbucket_take(&tb, 100.0), 0);
    /* Empty: the next token is 1/qps away, and asking does not spend it. */
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 100.0), 0.2, EPS);
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 100.0), 0.2, EPS);
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 100.1), 0.1, EPS);
    ck_assert_double_eq(tokenbucket_take(&tb, 100.2), 0);
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 100.2), 0.2, EPS);
}
END_TEST

START_TEST(bucket_rate_over_time)
{
    /* Taking whenever allowed for 10 s at 5 qps, burst 1: 1 + 50 tokens. */
    struct tokenbucket tb;
    tokenbucket_init(&tb, 5, 1, 0);
    int taken = 0;
    double now = 0;
    while (now <= 10.0 + EPS) {
        double wait = tokenbucket_take(&tb, now);
        if (wait == 0) {
            taken++;
            continue;
        }
        ck_assert(wait > 0 && wait <= 0.2 + EPS);
        now += wait;
    }
    ck_assert_int_eq(taken, 51);
}
END_TEST

START_TEST(bucket_caps_at_burst)
{
    struct tokenbucket tb;
    tokenbucket_init(&tb, 2, 3, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq(tokenbucket_take(&tb, 0), 0);
    /* An hour idle refills to the burst, not to 7200. */
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq(tokenbucket_take(&tb, 3600), 0);
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 3600), 0.5, EPS);
}
END_TEST

START_TEST(bucket_fractional_refill)
{
    struct tokenbucket tb;
    tokenbucket_init(&tb, 4, 1, 0);
    ck_assert_double_eq(tokenbucket_take(&tb, 0), 0);
    /* 0.1 s gives 0.4 token: 0.15 s more to go. */
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 0.1), 0.15, EPS);
    ck_assert_double_eq(tokenbucket_take(&tb, 0.25), 0);
}
END_TEST

START_TEST(bucket_clock_backwards)
{
    struct tokenbucket tb;
    tokenbucket_init(&tb, 1, 1, 10);
    ck_assert_double_eq(tokenbucket_take(&tb, 10), 0);
    /* An earlier time neither refills nor breaks the arithmetic. */
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 5), 1.0, EPS);
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 10.5), 0.5, EPS);
    ck_assert_double_eq(tokenbucket_take(&tb, 11), 0);
}
END_TEST

START_TEST(bucket_unlimited_and_zero_burst)
{
    struct tokenbucket tb;
    tokenbucket_init(&tb, -1, 1, 0);
    for (int i = 0; i < 100000; i++)
        ck_assert_double_eq(tokenbucket_take(&tb, 0), 0);
    tokenbucket_init(&tb, 10, 0, 0);   /* burst 0 means 1 */
    ck_assert_double_eq(tokenbucket_take(&tb, 0), 0);
    ck_assert_double_eq_tol(tokenbucket_take(&tb, 0), 0.1, EPS);
}
END_TEST

START_TEST(backoff_grows_caps_and_jitters)
{
    struct backoff b;
    backoff_init(&b, 0.2, 30, 12345);
    double ceiling = 0.2;
    for (int i = 0; i < 20; i++) {
        double d = backoff_next(&b);
        ck_assert_msg(d >= ceiling / 2 - EPS && d <= ceiling + EPS,
                      "step %d: %f outside [%f, %f]", i, d, ceiling / 2, ceiling);
        ck_assert(d <= 30 + EPS);
        ceiling = fmin(ceiling * 2, 30);
    }
    /* Deep in the streak it sits at the cap. */
    ck_assert_double_eq_tol(b.current, 30, EPS);
}
END_TEST

START_TEST(backoff_jitter_spreads)
{
    /* 1000 draws at the cap: all within [max/2, max], and both halves of
     * the range are used (not a constant). */
    struct backoff b;
    backoff_init(&b, 1, 1, 99);
    int low = 0, high = 0;
    double min = 1e9, max = 0;
    for (int i = 0; i < 1000; i++) {
        double d = backoff_next(&b);
        ck_assert(d >= 0.5 - EPS && d <= 1 + EPS);
        if (d < 0.75)
            low++;
        else
            high++;
        min = fmin(min, d);
        max = fmax(max, d);
    }
    ck_assert_int_gt(low, 300);
    ck_assert_int_gt(high, 300);
    ck_assert(max - min > 0.4);
}
END_TEST

START_TEST(backoff_reset_and_seeds)
{
    struct backoff b;
    backoff_init(&b, 0.2, 30, 7);
    for (int i = 0; i < 10; i++)
        backoff_next(&b);
    backoff_reset(&b);
    double d = backoff_next(&b);
    ck_assert(d >= 0.1 - EPS && d <= 0.2 + EPS);

    /* Same seed, same sequence; seed 0 draws one (still within bounds). */
    struct backoff x, y;
    backoff_init(&x, 1, 8, 42);
    backoff_init(&y, 1, 8, 42);
    for (int i = 0; i < 5; i++)
        ck_assert_double_eq(backoff_next(&x), backoff_next(&y));
    backoff_init(&x, 1, 8, 0);
    ck_assert(x.rng != 0);
    d = backoff_next(&x);
    ck_assert(d >= 0.5 - EPS && d <= 1 + EPS);

    /* max below initial is raised to initial. */
    backoff_init(&x, 2, 1, 3);
    for (int i = 0; i < 5; i++) {
        d = backoff_next(&x);
        ck_assert(d >= 1 - EPS && d <= 2 + EPS);
    }
}
END_TEST

START_TEST(rand_unit_range)
{
    uint64_t s = 1;
    for (int i = 0; i < 100000; i++) {
        double u = rand_unit(&s);
        ck_assert(u >= 0 && u < 1);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("core");
    /* The 100 000-step loops report each check to check's parent process:
     * about a second on a busy machine. More room than the default 4 s,
     * which only a hang should reach. */
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, bucket_starts_full_then_waits);
    tcase_add_test(tc, bucket_rate_over_time);
    tcase_add_test(tc, bucket_caps_at_burst);
    tcase_add_test(tc, bucket_fractional_refill);
    tcase_add_test(tc, bucket_clock_backwards);
    tcase_add_test(tc, bucket_unlimited_and_zero_burst);
    tcase_add_test(tc, backoff_grows_caps_and_jitters);
    tcase_add_test(tc, backoff_jitter_spreads);
    tcase_add_test(tc, backoff_reset_and_seeds);
    tcase_add_test(tc, rand_unit_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

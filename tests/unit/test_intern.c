/* test_intern.c -- interned strings: equal strings share one copy, each
 * reference is released once, the table grows past its first size and
 * keeps every string intact, and threads may intern at once. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/intern.h"

START_TEST(equal_strings_share)
{
    char a[] = "0b7e3c4a-55d1-4c8e-9d3a-1f2e3d4c5b6a";
    char b[sizeof a];
    memcpy(b, a, sizeof a);
    const char *x = intern(a), *y = intern(b);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_eq(x, y);
    ck_assert_ptr_ne(x, a);
    ck_assert_str_eq(x, a);
    /* The copy is its own: the caller's buffer may change. */
    a[0] = 'X';
    ck_assert_str_eq(x, b);
    const char *other = intern("another");
    ck_assert_ptr_ne(other, x);
    /* One of two references released: the string stays, and is found. */
    unintern(y);
    ck_assert_str_eq(x, b);
    ck_assert_ptr_eq(intern(b), x);
    unintern(x);
    unintern(x);
    unintern(other);
    unintern(NULL);
}
END_TEST

START_TEST(many_strings_survive_growth)
{
    enum { N = 50000 };
    const char **s = calloc(N, sizeof *s);
    ck_assert_ptr_nonnull(s);
    char buf[64];
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof buf, "uid-%08d", i);
        s[i] = intern(buf);
        ck_assert_ptr_nonnull(s[i]);
    }
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof buf, "uid-%08d", i);
        ck_assert_str_eq(s[i], buf);
        ck_assert_ptr_eq(intern(buf), s[i]);
    }
    /* Every other one released twice (both references), the rest once. */
    for (int i = 0; i < N; i++) {
        unintern(s[i]);
        if (i % 2 == 0)
            unintern(s[i]);
    }
    for (int i = 1; i < N; i += 2) {
        snprintf(buf, sizeof buf, "uid-%08d", i);
        ck_assert_str_eq(s[i], buf);
        unintern(s[i]);
    }
    free(s);
}
END_TEST

static void *churn(void *arg)
{
    int seed = *(int *)arg;
    char buf[32];
    for (int round = 0; round < 2000; round++) {
        const char *held[16];
        for (int i = 0; i < 16; i++) {
            snprintf(buf, sizeof buf, "pod-%d", (round * 7 + i * seed) % 40);
            held[i] = intern(buf);
            if (!held[i] || strcmp(held[i], buf) != 0)
                return (void *)1;
        }
        for (int i = 0; i < 16; i++)
            unintern(held[i]);
    }
    return NULL;
}

START_TEST(threads_at_once)
{
    pthread_t t[4];
    int seeds[4] = {1, 3, 5, 7};
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, churn, &seeds[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        ck_assert_int_eq(pthread_join(t[i], &rc), 0);
        ck_assert_ptr_null(rc);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("intern");
    TCase *tc = tcase_create("intern");
    tcase_add_test(tc, equal_strings_share);
    tcase_add_test(tc, many_strings_survive_growth);
    tcase_add_test(tc, threads_at_once);
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

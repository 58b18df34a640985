/* test_podkey.c -- a pod key and its parts in one block, built from the
 * parts or split from the key. */
#include <check.h>
#include <stdlib.h>

#include "../../core/podkey.h"

START_TEST(from_parts_and_from_key)
{
    const char *ns, *name, *ns2, *name2;
    char *k = podkey_new("bench-churn", "churn-000001", &ns, &name);
    ck_assert_ptr_nonnull(k);
    ck_assert_str_eq(k, "bench-churn/churn-000001");
    ck_assert_str_eq(ns, "bench-churn");
    ck_assert_str_eq(name, "churn-000001");
    /* All three in the one block the key starts. */
    ck_assert(ns > k && name > ns && name + 12 < k + 2 * 23 + 4);
    char *k2 = podkey_split(k, &ns2, &name2);
    ck_assert_ptr_nonnull(k2);
    ck_assert_str_eq(k2, k);
    ck_assert_str_eq(ns2, "bench-churn");
    ck_assert_str_eq(name2, "churn-000001");
    free(k);
    free(k2);
    /* Split at the first '/'; no '/' is no key. */
    k = podkey_split("a/b/c", &ns, &name);
    ck_assert_str_eq(ns, "a");
    ck_assert_str_eq(name, "b/c");
    free(k);
    ck_assert_ptr_null(podkey_split("nokey", &ns, &name));
    k = podkey_new("", "", &ns, &name);
    ck_assert_str_eq(k, "/");
    ck_assert_str_eq(ns, "");
    ck_assert_str_eq(name, "");
    free(k);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("podkey");
    TCase *tc = tcase_create("podkey");
    tcase_add_test(tc, from_parts_and_from_key);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test_privdrop.c -- --user: resolving USER[:GROUP] against this
 * machine's user and group databases (Debian's: nobody is 65534, its group
 * nogroup 65534; uid and gid 54321 have no entries), its refusals, and, when
 * run as root, the drop itself and the hand-over of the socket directory,
 * each in a child process so this one keeps root. */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../core/privdrop.h"

#define NOBODY 65534

static void parse_ok(const char *spec, privdrop_user *u)
{
    char err[256] = "";
    ck_assert_msg(privdrop_parse(spec, u, err, sizeof err) == 0, "%s: %s", spec, err);
    ck_assert_str_eq(u->spec, spec);
}

static void parse_fails(const char *spec, const char *says)
{
    char err[256] = "";
    privdrop_user u;
    ck_assert_int_eq(privdrop_parse(spec, &u, err, sizeof err), -1);
    ck_assert_msg(strstr(err, says) && strstr(err, "--user"), "%s: \"%s\" lacks \"%s\"",
                  spec, err, says);
    /* Nothing is left to free after a failure. */
    ck_assert_ptr_null(u.spec);
    ck_assert_ptr_null(u.groups);
}

static int has_group(const privdrop_user *u, gid_t g)
{
    for (size_t i = 0; i < u->n_groups; i++)
        if (u->groups[i] == g)
            return 1;
    return 0;
}

START_TEST(user_alone_takes_its_groups)
{
    privdrop_user u;
    parse_ok("nobody", &u);
    ck_assert_uint_eq(u.uid, NOBODY);
    ck_assert_uint_eq(u.gid, NOBODY);
    ck_assert(has_group(&u, NOBODY));
    privdrop_user_free(&u);

    /* A numeric uid with a passwd entry is that entry. */
    parse_ok("65534", &u);
    ck_assert_uint_eq(u.uid, NOBODY);
    ck_assert_uint_eq(u.gid, NOBODY);
    ck_assert(has_group(&u, NOBODY));
    privdrop_user_free(&u);
}
END_TEST

START_TEST(explicit_group_is_the_only_one)
{
    privdrop_user u;
    parse_ok("nobody:nogroup", &u);
    ck_assert_uint_eq(u.uid, NOBODY);
    ck_assert_uint_eq(u.gid, NOBODY);
    ck_assert_uint_eq(u.n_groups, 0);
    privdrop_user_free(&u);

    parse_ok("nobody:54321", &u);
    ck_assert_uint_eq(u.gid, 54321);
    ck_assert_uint_eq(u.n_groups, 0);
    privdrop_user_free(&u);

    /* Ids without entries are fine once the group is given. */
    parse_ok("54321:54321", &u);
    ck_assert_uint_eq(u.uid, 54321);
    ck_assert_uint_eq(u.gid, 54321);
    ck_assert_uint_eq(u.n_groups, 0);
    privdrop_user_free(&u);
}
END_TEST

START_TEST(bad_syntax)
{
    parse_fails("", "want USER or USER:GROUP");
    parse_fails(":nogroup", "want USER or USER:GROUP");
    parse_fails("nobody:", "want USER or USER:GROUP");
    parse_fails("nobody:nogroup:x", "want USER or USER:GROUP");
}
END_TEST

START_TEST(unknown_names_and_ids)
{
    parse_fails("vkc-no-such-user", "no such user");
    parse_fails("nobody:vkc-no-such-group", "no such group \"vkc-no-such-group\"");
    parse_fails("54321", "uid 54321 has no passwd entry");
    /* (uid_t)-1 means "unchanged" to setresuid: not an id. */
    parse_fails("4294967295:1", "no such user");
    parse_fails("-1:1", "no such user");
}
END_TEST

START_TEST(root_refused)
{
    parse_fails("root", "uid 0 is root");
    parse_fails("0:54321", "uid 0 is root");
    parse_fails("nobody:root", "gid 0");
    parse_fails("nobody:0", "gid 0");
}
END_TEST

/* Run fn in a child; its exit status. */
static int in_child(int (*fn)(void))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(fn());
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Each failed check returns its own status, so a failure says which. */
static int drop_to_nobody(void)
{
    char err[256];
    privdrop_user u;
    if (privdrop_parse("nobody", &u, err, sizeof err) < 0)
        return 10;
    const char *must_read[] = {"/etc/passwd", NULL};
    if (privdrop_drop(&u, must_read) < 0)
        return 11;
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) < 0 || r != NOBODY || e != NOBODY || s != NOBODY)
        return 12;
    if (getresgid(&rg, &eg, &sg) < 0 || rg != NOBODY || eg != NOBODY || sg != NOBODY)
        return 13;
    gid_t groups[64];
    int n = getgroups(64, groups);
    if (n != (int)u.n_groups || n < 1 || groups[0] == 0)
        return 14;
    if (setuid(0) == 0 || setgid(0) == 0 || seteuid(0) == 0)
        return 15;
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        return 16;
    /* Root's files are out of reach now. */
    if (open("/etc/shadow", O_RDONLY) >= 0)
        return 17;
    privdrop_user_free(&u);
    return 0;
}

static int drop_refuses_unreadable(void)
{
    char err[256];
    privdrop_user u;
    if (privdrop_parse("nobody", &u, err, sizeof err) < 0)
        return 10;
    /* Root's alone (0640 root:shadow): nobody cannot read it later. */
    const char *must_read[] = {"/etc/passwd", "/etc/shadow", NULL};
    int rc = privdrop_drop(&u, must_read);
    privdrop_user_free(&u);
    return rc == -1 ? 0 : 11;
}

START_TEST(drop_as_root)
{
    if (geteuid() != 0) {
        fprintf(stderr, "drop_as_root: not root, nothing to drop\n");
        return;
    }
    ck_assert_int_eq(in_child(drop_to_nobody), 0);
    ck_assert_int_eq(in_child(drop_refuses_unreadable), 0);
}
END_TEST

START_TEST(socket_dir_as_root)
{
    if (geteuid() != 0) {
        fprintf(stderr, "socket_dir_as_root: not root, nothing to hand over\n");
        return;
    }
    char top[] = "/tmp/vkc-privdrop-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(top));
    char dir[PATH_MAX], deep[PATH_MAX], deep_parent[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/run", top);
    snprintf(deep_parent, sizeof deep_parent, "%s/private", top);
    snprintf(deep, sizeof deep, "%s/private/run", top);
    char err[256];
    privdrop_user u;
    ck_assert_int_eq(privdrop_parse("nobody", &u, err, sizeof err), 0);

    /* Reachable: handed over, 0700. Again, as after a restart: taken back
     * and handed over once more. */
    ck_assert_int_eq(chmod(top, 0755), 0);
    struct stat st;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(privdrop_socket_dir(dir, &u), 0);
        ck_assert_int_eq(lstat(dir, &st), 0);
        ck_assert_uint_eq(st.st_uid, NOBODY);
        ck_assert_uint_eq(st.st_gid, NOBODY);
        ck_assert_uint_eq(st.st_mode & 07777, 0700);
    }

    /* The parent socket_dir_prepare makes is 0700 root's: nobody cannot
     * pass it, and that is an error now rather than a provider that cannot
     * connect later. */
    ck_assert_int_eq(privdrop_socket_dir(deep, &u), -1);

    privdrop_user_free(&u);
    ck_assert_int_eq(rmdir(deep), 0);
    ck_assert_int_eq(rmdir(deep_parent), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    ck_assert_int_eq(rmdir(top), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("privdrop");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, user_alone_takes_its_groups);
    tcase_add_test(parse, explicit_group_is_the_only_one);
    tcase_add_test(parse, bad_syntax);
    tcase_add_test(parse, unknown_names_and_ids);
    tcase_add_test(parse, root_refused);
    suite_add_tcase(s, parse);
    TCase *drop = tcase_create("drop");
    tcase_add_test(drop, drop_as_root);
    tcase_add_test(drop, socket_dir_as_root);
    suite_add_tcase(s, drop);
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

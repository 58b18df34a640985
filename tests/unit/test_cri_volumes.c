/* test_cri_volumes.c -- the pure parts of vkc-provider-cri's data volumes:
 * base64, the payload of configMap / secret / downwardAPI sources, and the
 * atomic writer on a real directory. */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cri.h"
#include "json.h"

static yajl_val parse(const char *json)
{
    char err[128];
    yajl_val v = vk_json_parse(json, strlen(json), err, sizeof err);
    ck_assert_msg(v != NULL, "%s", err);
    return v;
}

static const vol_file *file(const vol_payload *pl, const char *path)
{
    for (size_t i = 0; i < pl->n; i++)
        if (strcmp(pl->files[i].path, path) == 0)
            return &pl->files[i];
    return NULL;
}

static void assert_file(const vol_payload *pl, const char *path, const char *data, mode_t mode)
{
    const vol_file *f = file(pl, path);
    ck_assert_msg(f != NULL, "no file %s", path);
    ck_assert_uint_eq(f->len, strlen(data));
    ck_assert_msg(memcmp(f->data, data, f->len) == 0, "%s holds '%.*s'", path, (int)f->len,
                  f->data);
    ck_assert_uint_eq(f->mode, mode);
}

START_TEST(base64)
{
    static const struct {
        const char *in, *out;
        int rc;
    } cases[] = {
        {"", "", 0}, {"Zg==", "f", 0}, {"Zm8=", "fo", 0}, {"Zm9v", "foo", 0},
        {"dXNlcjpwYXNz", "user:pass", 0}, {"Zm9vYg==", "foob", 0},
        {"Zg=", NULL, -1}, {"Z===", NULL, -1}, {"Zg==Zg==", NULL, -1}, {"Zm9*", NULL, -1},
        {"Zm=v", NULL, -1},
        {"Zm9v\n", "foo", 0}, /* Go skips CR and LF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        vk_buf b = VK_BUF_INIT;
        vk_buf_puts(&b, "x");
        int rc = vk_base64_decode(cases[i].in, strlen(cases[i].in), &b);
        ck_assert_msg(rc == cases[i].rc, "'%s': rc %d", cases[i].in, rc);
        if (rc == 0)
            ck_assert_str_eq(b.data + 1, cases[i].out);
        else
            ck_assert_str_eq(b.data, "x");  /* untouched on failure */
        vk_buf_free(&b);
    }
}
END_TEST

START_TEST(paths)
{
    static const char *const good[] = {"a", "ca.crt", "a/b/c", ".hidden", "a/.b", "a/..b"};
    static const char *const bad[] = {"", "/a", "..", "../a", "a/..", "a/../b", "..data",
                                      "..2020", "...", "a//b", "a/", ".", "a/./b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        ck_assert_msg(payload_path_ok(good[i]), "%s refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!payload_path_ok(bad[i]), "%s accepted", bad[i]);
    char deep[200] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "d/");
    strcat(deep, "f");
    ck_assert(!payload_path_ok(deep));
}
END_TEST

START_TEST(configmap_keys)
{
    yajl_val cm = parse("{\"metadata\":{\"name\":\"cfg\"},\"data\":{\"a\":\"1\",\"b.txt\":\"two\\n\"},"
                        "\"binaryData\":{\"bin\":\"AAEC\"}}");
    vol_payload pl = {0};
    char err[256];
    ck_assert_int_eq(payload_keys(&pl, cm, false, NULL, 0644, false, err, sizeof err), 0);
    ck_assert_uint_eq(pl.n, 3);
    assert_file(&pl, "a", "1", 0644);
    assert_file(&pl, "b.txt", "two\n", 0644);
    const vol_file *bin = file(&pl, "bin");
    ck_assert(bin && bin->len == 3 && memcmp(bin->data, "\0\1\2", 3) == 0);
    ck_assert_uint_eq(pl.bytes, 1 + 4 + 3);
    payload_free(&pl);

    /* items select and rename; their mode wins over the default. */
    yajl_val items = parse("[{\"key\":\"a\",\"path\":\"dir/one\",\"mode\":256},"
                           "{\"key\":\"b.txt\",\"path\":\"b\"}]");
    ck_assert_int_eq(payload_keys(&pl, cm, false, items, 0600, false, err, sizeof err), 0);
    ck_assert_uint_eq(pl.n, 2);
    assert_file(&pl, "dir/one", "1", 0400);
    assert_file(&pl, "b", "two\n", 0600);
    payload_free(&pl);
    yajl_tree_free(items);

    /* A key that is not there fails, unless the source is optional. */
    items = parse("[{\"key\":\"nope\",\"path\":\"x\"},{\"key\":\"a\",\"path\":\"y\"}]");
    ck_assert_int_eq(payload_keys(&pl, cm, false, items, 0644, false, err, sizeof err), -1);
    ck_assert_str_eq(err, "configmap references non-existent config key: nope");
    payload_free(&pl);
    ck_assert_int_eq(payload_keys(&pl, cm, false, items, 0644, true, err, sizeof err), 0);
    ck_assert_uint_eq(pl.n, 1);
    assert_file(&pl, "y", "1", 0644);
    payload_free(&pl);
    yajl_tree_free(items);

    /* Absent and optional: an empty volume. */
    ck_assert_int_eq(payload_keys(&pl, NULL, false, NULL, 0644, true, err, sizeof err), 0);
    ck_assert_uint_eq(pl.n, 0);

    /* An item path that would leave the volume. */
    items = parse("[{\"key\":\"a\",\"path\":\"../escape\"}]");
    ck_assert_int_eq(payload_keys(&pl, cm, false, items, 0644, false, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not a usable file name"));
    payload_free(&pl);
    yajl_tree_free(items);
    yajl_tree_free(cm);
}
END_TEST

START_TEST(secret_keys)
{
    yajl_val s = parse("{\"data\":{\"user\":\"YWRtaW4=\",\"pass\":\"czNjcjN0\"},"
                       "\"stringData\":{\"ignored\":\"x\"}}");
    vol_payload pl = {0};
    char err[256];
    ck_assert_int_eq(payload_keys(&pl, s, true, NULL, 0400, false, err, sizeof err), 0);
    ck_assert_uint_eq(pl.n, 2);
    assert_file(&pl, "user", "admin", 0400);
    assert_file(&pl, "pass", "s3cr3t", 0400);
    payload_free(&pl);
    yajl_val items = parse("[{\"key\":\"missing\",\"path\":\"m\"}]");
    ck_assert_int_eq(payload_keys(&pl, s, true, items, 0644, false, err, sizeof err), -1);
    ck_assert_str_eq(err, "references non-existent secret key: missing");
    payload_free(&pl);
    yajl_tree_free(items);
    yajl_tree_free(s);

    s = parse("{\"data\":{\"bad\":\"not base64!\"}}");
    ck_assert_int_eq(payload_keys(&pl, s, true, NULL, 0644, false, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "base64"));
    payload_free(&pl);
    yajl_tree_free(s);
}
END_TEST

START_TEST(downward)
{
    yajl_val pod = parse(
        "{\"metadata\":{\"name\":\"web\",\"namespace\":\"prod\",\"uid\":\"u-1\","
        "\"labels\":{\"tier\":\"front\",\"app\":\"web\"},"
        "\"annotations\":{\"note\":\"say \\\"hi\\\"\\n\\tbye\\\\\",\"uni\":\"caf\\u00e9\"}},"
        "\"spec\":{\"containers\":[{\"name\":\"app\",\"resources\":{"
        "\"limits\":{\"memory\":\"64Mi\"},\"requests\":{\"cpu\":\"250m\"}}}]}}");
    yajl_val items = parse(
        "[{\"path\":\"name\",\"fieldRef\":{\"fieldPath\":\"metadata.name\"}},"
        "{\"path\":\"ns\",\"fieldRef\":{\"fieldPath\":\"metadata.namespace\"},\"mode\":384},"
        "{\"path\":\"uid\",\"fieldRef\":{\"fieldPath\":\"metadata.uid\"}},"
        "{\"path\":\"labels\",\"fieldRef\":{\"fieldPath\":\"metadata.labels\"}},"
        "{\"path\":\"annotations\",\"fieldRef\":{\"fieldPath\":\"metadata.annotations\"}},"
        "{\"path\":\"tier\",\"fieldRef\":{\"fieldPath\":\"metadata.labels['tier']\"}},"
        "{\"path\":\"mem\",\"resourceFieldRef\":{\"containerName\":\"app\","
        "\"resource\":\"limits.memory\",\"divisor\":\"1Mi\"}},"
        "{\"path\":\"cpu\",\"resourceFieldRef\":{\"containerName\":\"app\","
        "\"resource\":\"limits.cpu\"}},"
        "{\"path\":\"req\",\"resourceFieldRef\":{\"containerName\":\"app\","
        "\"resource\":\"requests.cpu\",\"divisor\":\"1m\"}},"
        "{\"path\":\"reqmem\",\"resourceFieldRef\":{\"containerName\":\"app\","
        "\"resource\":\"requests.memory\"}}]");
    downward_node node = {.cpu_milli = 2000, .memory_bytes = 1 << 30, .storage_bytes = 1 << 20};
    vol_payload pl = {0};
    char err[256];
    ck_assert_int_eq(payload_downward(&pl, items, 0644, pod, &node, err, sizeof err), 0);
    assert_file(&pl, "name", "web", 0644);
    assert_file(&pl, "ns", "prod", 0600);
    assert_file(&pl, "uid", "u-1", 0644);
    /* Sorted, Go-quoted, no final newline. */
    assert_file(&pl, "labels", "app=\"web\"\ntier=\"front\"", 0644);
    assert_file(&pl, "annotations", "note=\"say \\\"hi\\\"\\n\\tbye\\\\\"\nuni=\"caf\xc3\xa9\"",
                0644);
    assert_file(&pl, "tier", "front", 0644);
    assert_file(&pl, "mem", "64", 0644);
    assert_file(&pl, "cpu", "2", 0644);     /* no limit: the node's */
    assert_file(&pl, "req", "250", 0644);
    assert_file(&pl, "reqmem", "0", 0644);
    payload_free(&pl);
    yajl_tree_free(items);

    items = parse("[{\"path\":\"x\",\"fieldRef\":{\"fieldPath\":\"spec.nodeName\"}}]");
    ck_assert_int_eq(payload_downward(&pl, items, 0644, pod, &node, err, sizeof err), -1);
    ck_assert_str_eq(err, "unsupported fieldPath: spec.nodeName");
    payload_free(&pl);
    yajl_tree_free(items);
    items = parse("[{\"path\":\"x\",\"resourceFieldRef\":{\"containerName\":\"nope\","
                  "\"resource\":\"limits.cpu\"}}]");
    ck_assert_int_eq(payload_downward(&pl, items, 0644, pod, &node, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "nope"));
    payload_free(&pl);
    yajl_tree_free(items);
    yajl_tree_free(pod);
}
END_TEST

/* ---- the atomic writer --------------------------------------------------------------- */

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/vkc-aw-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static char *slurp(const char *rel)
{
    static char buf[256];
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static mode_t mode_of(const char *rel)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    ck_assert_int_eq(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static char *link_of(const char *rel)
{
    static char buf[256];
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

static size_t entries(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *f = popen(cmd, "r");
    size_t n = 0;
    ck_assert(fscanf(f, "%zu", &n) == 1);
    pclose(f);
    return n;
}

START_TEST(atomic_writer)
{
    vol_payload pl = {0};
    char err[256], first[256];
    ck_assert(!aw_written(dir));
    ck_assert_int_eq(payload_add(&pl, "token", "t0k3n", 5, 0600), 0);
    ck_assert_int_eq(payload_add(&pl, "ca.crt", "CERT", 4, 0644), 0);
    ck_assert_int_eq(payload_add(&pl, "conf/app.yaml", "a: 1\n", 5, 0644), 0);
    ck_assert_int_eq(aw_write(dir, &pl, err, sizeof err), 1);
    ck_assert(aw_written(dir));
    snprintf(first, sizeof first, "%s", link_of("..data"));
    ck_assert_msg(strncmp(first, "..", 2) == 0 && !strchr(first, '/'), "..data -> %s", first);
    ck_assert_str_eq(link_of("token"), "..data/token");
    ck_assert_str_eq(link_of("conf"), "..data/conf");
    ck_assert_str_eq(slurp("token"), "t0k3n");
    ck_assert_str_eq(slurp("conf/app.yaml"), "a: 1\n");
    ck_assert_uint_eq(mode_of("token"), 0600);
    ck_assert_uint_eq(mode_of("ca.crt"), 0644);
    ck_assert_uint_eq(mode_of(first), 0755);
    /* ..data, the data directory and three links. */
    ck_assert_uint_eq(entries(), 5);

    /* The same content again: nothing written. */
    ck_assert_int_eq(aw_write(dir, &pl, err, sizeof err), 0);
    ck_assert_str_eq(link_of("..data"), first);

    /* A mode change alone is a change. */
    ck_assert_int_eq(payload_add(&pl, "token", "t0k3n", 5, 0640), 0);
    ck_assert_int_eq(aw_write(dir, &pl, err, sizeof err), 1);
    ck_assert_uint_eq(mode_of("token"), 0640);
    payload_free(&pl);

    /* New content, one file gone: a new data directory, the old one and
     * the lost name's link removed. */
    char second[256];
    snprintf(second, sizeof second, "%s", link_of("..data"));
    ck_assert_int_eq(payload_add(&pl, "token", "n3w", 3, 0600), 0);
    ck_assert_int_eq(payload_add(&pl, "conf/app.yaml", "a: 2\n", 5, 0644), 0);
    ck_assert_int_eq(aw_write(dir, &pl, err, sizeof err), 1);
    ck_assert_str_ne(link_of("..data"), second);
    ck_assert_str_eq(slurp("token"), "n3w");
    ck_assert_str_eq(slurp("conf/app.yaml"), "a: 2\n");
    ck_assert_ptr_null(link_of("ca.crt"));
    ck_assert_uint_eq(entries(), 4);
    char old[400];
    snprintf(old, sizeof old, "%s/%s", dir, second);
    ck_assert_int_eq(access(old, F_OK), -1);
    payload_free(&pl);

    /* An empty payload empties the volume. */
    ck_assert_int_eq(aw_write(dir, &pl, err, sizeof err), 1);
    ck_assert_uint_eq(entries(), 2);
    ck_assert_int_eq(aw_write(dir, &pl, err, sizeof err), 0);

    /* Refused paths never reach the disk. */
    ck_assert_int_eq(payload_add(&pl, "../x", "y", 1, 0644), -1);
    ck_assert_int_eq(payload_add(&pl, "..data", "y", 1, 0644), -1);
    ck_assert_uint_eq(pl.n, 0);
}
END_TEST

START_TEST(payload_bound)
{
    vol_payload pl = {0};
    size_t big = PAYLOAD_MAX_BYTES / 2 + 1;
    char *data = calloc(1, big);
    ck_assert_int_eq(payload_add(&pl, "a", data, big, 0644), 0);
    ck_assert_int_eq(payload_add(&pl, "b", data, big, 0644), -1);
    /* Replacing a file frees its share. */
    ck_assert_int_eq(payload_add(&pl, "a", data, big, 0644), 0);
    ck_assert_uint_eq(pl.bytes, big);
    payload_free(&pl);
    free(data);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cri volumes");
    TCase *tc = tcase_create("payload");
    tcase_add_test(tc, base64);
    tcase_add_test(tc, paths);
    tcase_add_test(tc, configmap_keys);
    tcase_add_test(tc, secret_keys);
    tcase_add_test(tc, downward);
    tcase_add_test(tc, payload_bound);
    suite_add_tcase(s, tc);
    tc = tcase_create("atomic writer");
    tcase_add_checked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, atomic_writer);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

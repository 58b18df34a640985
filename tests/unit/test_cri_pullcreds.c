/* test_cri_pullcreds.c -- which imagePullSecrets credentials go with which
 * image (vkc-provider-cri's pullcreds.c, the kubelet's keyring rules).
 * No registry is reachable here: the selection is what is tested. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cri.h"

/* base64("hub:hubpass") */
#define HUB_AUTH "aHViOmh1YnBhc3M="

static const char *config_json =
    "{\"auths\":{"
    "\"https://index.docker.io/v1/\":{\"auth\":\"" HUB_AUTH "\",\"email\":\"a@b.c\"},"
    "\"registry.example.com:5000\":{\"username\":\"ports\",\"password\":\"p5000\"},"
    "\"*.corp.example.com\":{\"username\":\"glob\",\"password\":\"g\"},"
    "\"quay.io\":{\"username\":\"quay\",\"password\":\"q\"},"
    "\"https://quay.io/v2/team\":{\"username\":\"team\",\"password\":\"t\",\"auth\":\"\"},"
    "\"ghcr.io\":{\"identitytoken\":\"idtok\",\"registrytoken\":\"regtok\"}"
    "}}";

static pull_keyring ring;

static void setup(void)
{
    memset(&ring, 0, sizeof ring);
    ck_assert_int_eq(keyring_add_config(&ring, config_json, strlen(config_json), false), 0);
    ck_assert_uint_eq(ring.n, 6);
}

static void teardown(void)
{
    keyring_free(&ring);
}

/* The usernames (or "-") of the credentials chosen for image, joined. */
static const char *chosen(const char *image)
{
    static char buf[256];
    const pull_cred *out[8];
    size_t n = keyring_lookup(&ring, image, out, 8);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? "," : "",
                 out[i]->username ? out[i]->username : "-");
    return buf;
}

START_TEST(matching)
{
    static const struct {
        const char *image, *users;
    } cases[] = {
        /* Docker Hub, however the image names it. */
        {"busybox", "hub"},
        {"busybox:1.36", "hub"},
        {"library/busybox", "hub"},
        {"someone/tool:2", "hub"},
        {"docker.io/library/busybox:latest", "hub"},
        {"index.docker.io/library/busybox", "hub"},
        /* Ports must be equal. */
        {"registry.example.com:5000/app:1", "ports"},
        {"registry.example.com/app:1", ""},
        {"registry.example.com:5001/app", ""},
        /* A glob matches one label, not more. */
        {"img.corp.example.com/x", "glob"},
        {"a.img.corp.example.com/x", ""},
        {"corp.example.com/x", ""},
        /* The more specific path first, then the host. */
        {"quay.io/team/app:v1", "team,quay"},
        {"quay.io/other/app", "quay"},
        {"quay.io/teammate/app", "team,quay"},
        /* Somewhere else entirely: anonymous, and no Docker Hub fallback
         * for an image that names its registry. */
        {"localhost:5000/x", ""},
        {"example.org/x", ""},
        {"ghcr.io/owner/img", "-"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        ck_assert_msg(strcmp(chosen(cases[i].image), cases[i].users) == 0,
                      "%s: chose '%s', want '%s'", cases[i].image, chosen(cases[i].image),
                      cases[i].users);
}
END_TEST

START_TEST(entries)
{
    const pull_cred *out[2];
    ck_assert_uint_eq(keyring_lookup(&ring, "busybox", out, 2), 1);
    /* "auth" is decoded into username and password, and passed on too. */
    ck_assert_str_eq(out[0]->username, "hub");
    ck_assert_str_eq(out[0]->password, "hubpass");
    ck_assert_str_eq(out[0]->auth, HUB_AUTH);
    ck_assert_str_eq(out[0]->key, "index.docker.io");
    ck_assert_uint_eq(keyring_lookup(&ring, "ghcr.io/a/b", out, 2), 1);
    ck_assert_str_eq(out[0]->identity_token, "idtok");
    ck_assert_str_eq(out[0]->registry_token, "regtok");
    ck_assert_ptr_null(out[0]->password);
    ck_assert_uint_eq(keyring_lookup(&ring, "quay.io/team/x", out, 2), 2);
    ck_assert_str_eq(out[0]->key, "quay.io/team");
    /* The bound is respected. */
    ck_assert_uint_eq(keyring_lookup(&ring, "quay.io/team/x", out, 1), 1);
}
END_TEST

START_TEST(secrets)
{
    pull_keyring k = {0};
    /* {"auths":{"r.example.com":{"username":"u","password":"p"}}} */
    const char *json_secret =
        "{\"kind\":\"Secret\",\"type\":\"kubernetes.io/dockerconfigjson\",\"data\":"
        "{\".dockerconfigjson\":\"eyJhdXRocyI6eyJyLmV4YW1wbGUuY29tIjp7InVzZXJuYW1lIjoidSIsInBh"
        "c3N3b3JkIjoicCJ9fX0=\"}}";
    /* {"old.example.com":{"auth":"b2xkOnNlY3JldA=="}} (old:secret) */
    const char *cfg_secret =
        "{\"kind\":\"Secret\",\"type\":\"kubernetes.io/dockercfg\",\"data\":"
        "{\".dockercfg\":\"eyJvbGQuZXhhbXBsZS5jb20iOnsiYXV0aCI6ImIyeGtPbk5sWTNKbGRBPT0ifX0=\"}}";
    const char *opaque = "{\"kind\":\"Secret\",\"type\":\"Opaque\",\"data\":{\"a\":\"Yg==\"}}";
    ck_assert_int_eq(keyring_add_secret(&k, json_secret, strlen(json_secret)), 0);
    ck_assert_int_eq(keyring_add_secret(&k, cfg_secret, strlen(cfg_secret)), 0);
    ck_assert_int_eq(keyring_add_secret(&k, opaque, strlen(opaque)), -1);
    ck_assert_int_eq(keyring_add_secret(&k, "not json", 8), -1);
    const pull_cred *out[2];
    ck_assert_uint_eq(keyring_lookup(&k, "r.example.com/app", out, 2), 1);
    ck_assert_str_eq(out[0]->username, "u");
    ck_assert_str_eq(out[0]->password, "p");
    ck_assert_uint_eq(keyring_lookup(&k, "old.example.com/app", out, 2), 1);
    ck_assert_str_eq(out[0]->username, "old");
    ck_assert_str_eq(out[0]->password, "secret");
    ck_assert_uint_eq(keyring_lookup(&k, "busybox", out, 2), 0);
    keyring_free(&k);

    /* An "auth" that is not base64 of user:password is refused. */
    const char *bad = "{\"auths\":{\"x.io\":{\"auth\":\"bm9jb2xvbg==\"}}}";   /* "nocolon" */
    ck_assert_int_eq(keyring_add_config(&k, bad, strlen(bad), false), -1);
    ck_assert_int_eq(keyring_add_config(&k, "{\"auths\":3}", 11, false), -1);
    ck_assert_uint_eq(k.n, 0);
    keyring_free(&k);
}
END_TEST

/* The image is looked up by its normalised repository, as the kubelet
 * does: an entry for "docker.io" is Docker Hub's too, Docker Hub's entry
 * goes to no other registry, and a tag or digest takes no part. */
START_TEST(normalised)
{
    pull_keyring k = {0};
    const char *cfg =
        "{\"auths\":{"
        "\"https://index.docker.io/v1/\":{\"username\":\"hub\",\"password\":\"h\"},"
        "\"127.0.0.1:5000\":{\"username\":\"local\",\"password\":\"l\"},"
        "\"http://127.0.0.1:5001/v2/\":{\"username\":\"plain\",\"password\":\"p\"},"
        "\"[::1]:5000\":{\"username\":\"v6\",\"password\":\"6\"},"
        "\"r.example.com/team/app\":{\"username\":\"app\",\"password\":\"a\"}"
        "}}";
    const char *dockerio = "{\"auths\":{\"docker.io\":{\"username\":\"dio\",\"password\":\"d\"}}}";
    static const struct {
        const char *image, *users;
    } cases[] = {
        {"busybox", "hub"},
        {"localhost/busybox", ""},
        {"localhost:5000/busybox", ""},
        {"Registry/busybox", "hub"},    /* isDefaultRegistryMatch's own rule */
        {"127.0.0.1:5000/vkc/busybox:pull-1", "local"},
        {"127.0.0.1:5000/vkc/busybox@sha256:0123", "local"},
        {"127.0.0.1:5001/vkc/busybox:1", "plain"},
        {"127.0.0.1/vkc/busybox", ""},
        {"[::1]:5000/busybox:1", "v6"},
        {"[::1]/busybox", ""},
        {"r.example.com/team/app:v1", "app"},
        {"r.example.com/team/app@sha256:0123", "app"},
        {"r.example.com/team/ap:p", ""},
        {"r.example.com/team", ""},
    };
    ck_assert_int_eq(keyring_add_config(&k, cfg, strlen(cfg), false), 0);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const pull_cred *out[4];
        char got[64] = "";
        size_t n = keyring_lookup(&k, cases[i].image, out, 4);
        for (size_t j = 0; j < n; j++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", j ? "," : "",
                     out[j]->username);
        ck_assert_msg(strcmp(got, cases[i].users) == 0, "%s: chose '%s', want '%s'",
                      cases[i].image, got, cases[i].users);
    }
    /* "docker.io" (kubectl create secret docker-registry --docker-server
     * docker.io) matches Docker Hub's images however they are named, and
     * before the fallback to index.docker.io's entry. */
    ck_assert_int_eq(keyring_add_config(&k, dockerio, strlen(dockerio), false), 0);
    static const char *hub[] = {"busybox", "busybox:1.36", "library/busybox",
                                "someone/tool@sha256:00", "docker.io/busybox",
                                "index.docker.io/library/busybox"};
    for (size_t i = 0; i < sizeof hub / sizeof *hub; i++) {
        const pull_cred *out[4];
        size_t n = keyring_lookup(&k, hub[i], out, 4);
        ck_assert_msg(n == 1 && strcmp(out[0]->username, "dio") == 0, "%s: %zu credentials, %s",
                      hub[i], n, n ? out[0]->username : "none");
    }
    keyring_free(&k);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cri pull credentials");
    TCase *tc = tcase_create("keyring");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, matching);
    tcase_add_test(tc, entries);
    suite_add_tcase(s, tc);
    tc = tcase_create("secrets");
    tcase_add_test(tc, secrets);
    tcase_add_test(tc, normalised);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

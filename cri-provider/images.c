/* images.c -- make a container's image present, as its imagePullPolicy
 * says: Never uses what is there, IfNotPresent pulls only what is missing,
 * Always pulls (so the tag is re-resolved) every time a container starts.
 *
 * A pull uses the pod's imagePullSecrets as the kubelet does: the secrets
 * are fetched through the core when a pull is needed, the credentials
 * matching the image's registry (pullcreds.c) are tried in turn, most
 * specific first, and an image no credential matches is pulled
 * anonymously. A secret the core cannot give is warned about and skipped.
 * The pod's events are the kubelet's: Pulling, then Pulled (how long it
 * took), or Pulled "already present on machine" when no pull was needed;
 * the failure's Warning is the caller's, with the reason returned. */
#include "cri.h"

#include <stdio.h>
#include <string.h>

#define MAX_TRIES 8     /* credentials tried for one pull */

/* The API server defaults the policy; a pod written without one gets the
 * kubelet's rule: Always for ":latest" or no tag, else IfNotPresent. */
static const char *pull_policy(const vk_container *c)
{
    if (c->image_pull_policy && c->image_pull_policy[0])
        return c->image_pull_policy;
    const char *image = c->image ? c->image : "";
    if (strchr(image, '@'))
        return "IfNotPresent";
    const char *slash = strrchr(image, '/');
    const char *colon = strrchr(slash ? slash : image, ':');
    return !colon || strcmp(colon, ":latest") == 0 ? "Always" : "IfNotPresent";
}

/* 1 present, 0 absent, -1 the runtime could not say (err set). */
static int image_present(const char *image, char *err, size_t errlen)
{
    Runtime__V1__ImageStatusRequest req = RUNTIME__V1__IMAGE_STATUS_REQUEST__INIT;
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    Runtime__V1__ImageStatusResponse *resp = NULL;
    spec.image = (char *)image;
    req.image = &spec;
    if (rt_call(IMG("ImageStatus"), &req.base, &runtime__v1__image_status_response__descriptor,
                RT_QUICK_MS, &resp, err, errlen) != VK_OK)
        return -1;
    int present = resp->image != NULL;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return present;
}

static char *or_empty(char *s)
{
    return s ? s : "";
}

static int pull(const char *image, const pull_cred *cred, char *err, size_t errlen)
{
    Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    Runtime__V1__AuthConfig auth = RUNTIME__V1__AUTH_CONFIG__INIT;
    Runtime__V1__PullImageResponse *resp = NULL;
    spec.image = (char *)image;
    req.image = &spec;
    /* No server_address: containerd drops credentials whose address does
     * not parse to the host it pulls from, and the kubelet sends none. */
    if (cred) {
        auth.username = or_empty(cred->username);
        auth.password = or_empty(cred->password);
        auth.auth = or_empty(cred->auth);
        auth.identity_token = or_empty(cred->identity_token);
        auth.registry_token = or_empty(cred->registry_token);
        req.auth = &auth;
    }
    if (rt_call(IMG("PullImage"), &req.base, &runtime__v1__pull_image_response__descriptor,
                RT_PULL_MS, &resp, err, errlen) != VK_OK)
        return -1;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return 0;
}

/* A Normal event of the pod; none for the sandbox image, pulled at start
 * for no pod. */
static void event(const cri_pod *p, const char *reason, const char *msg)
{
    if (p->name && p->name[0])
        vk_core_emit_event(provider, p->ns, p->name, p->uid, "Normal", reason, msg);
}

/* The credentials of the pod's imagePullSecrets. */
static void keyring_from_pod(const cri_pod *p, pull_keyring *ring)
{
    vk_buf missing = VK_BUF_INIT;
    size_t n = p->pod ? p->pod->n_image_pull_secrets : 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = p->pod->image_pull_secrets[i];
        vk_buf b = VK_BUF_INIT;
        int code = vk_core_get_secret(provider, p->ns, name, &b, NULL);
        if (code != VK_OK)
            vk_buf_printf(&missing, "%s%s", missing.len ? ", " : "", name);
        else if (keyring_add_secret(ring, b.data ? b.data : "", b.len) < 0)
            vk_debug("image pull secret holds no docker config", "pod=%s/%s secret=%s", p->ns,
                     p->name, name);
        if (b.data)
            explicit_bzero(b.data, b.len);
        vk_buf_free(&b);
    }
    if (missing.len) {
        char msg[600];
        snprintf(msg, sizeof msg, "Unable to retrieve some image pull secrets (%s); attempting "
                 "to pull the image may not succeed.", missing.data);
        vk_core_emit_event(provider, p->ns, p->name, p->uid, "Warning",
                           "FailedToRetrieveImagePullSecret", msg);
    }
    vk_buf_free(&missing);
}

int images_ensure(const cri_pod *p, const vk_container *c, char *reason, size_t rlen,
                  char *msg, size_t mlen)
{
    const char *image = c->image;
    const char *policy = pull_policy(c);
    char err[512] = "";
    if (!image || !image[0]) {
        snprintf(reason, rlen, "InvalidImageName");
        snprintf(msg, mlen, "container %s has no image", c->name);
        return -1;
    }
    if (strcmp(policy, "Always") != 0) {
        int present = image_present(image, err, sizeof err);
        if (present > 0) {
            snprintf(msg, mlen, "Container image \"%s\" already present on machine", image);
            event(p, "Pulled", msg);
            msg[0] = '\0';
            return 0;
        }
        if (present == 0 && strcmp(policy, "Never") == 0) {
            snprintf(reason, rlen, "ErrImageNeverPull");
            snprintf(msg, mlen, "Container image \"%s\" is not present with pull policy of Never",
                     image);
            return -1;
        }
    }
    vk_info("pulling image", "pod=%s/%s image=%s", p->ns, p->name, image);
    snprintf(msg, mlen, "Pulling image \"%s\"", image);
    event(p, "Pulling", msg);
    msg[0] = '\0';
    int64_t start = cri_now_ns();
    pull_keyring ring = {0};
    const pull_cred *creds[MAX_TRIES];
    keyring_from_pod(p, &ring);
    size_t n = keyring_lookup(&ring, image, creds, MAX_TRIES);
    int rc = n ? -1 : pull(image, NULL, err, sizeof err);
    for (size_t i = 0; i < n && rc < 0; i++)
        rc = pull(image, creds[i], err, sizeof err);
    keyring_free(&ring);
    if (rc < 0) {
        snprintf(reason, rlen, "ErrImagePull");
        snprintf(msg, mlen, "failed to pull image \"%s\": %s", image, err);
        return -1;
    }
    snprintf(msg, mlen, "Successfully pulled image \"%s\" in %.3fs", image,
             (double)(cri_now_ns() - start) / 1e9);
    event(p, "Pulled", msg);
    msg[0] = '\0';
    return 0;
}

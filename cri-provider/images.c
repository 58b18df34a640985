/* images.c -- make a container's image present, as its imagePullPolicy
 * says: Never uses what is there, IfNotPresent pulls only what is missing,
 * Always pulls (so the tag is re-resolved) every time a container starts. */
#include "cri.h"

#include <stdio.h>
#include <string.h>

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

static int pull(const char *image, char *err, size_t errlen)
{
    Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    Runtime__V1__PullImageResponse *resp = NULL;
    spec.image = (char *)image;
    req.image = &spec;
    if (rt_call(IMG("PullImage"), &req.base, &runtime__v1__pull_image_response__descriptor,
                RT_PULL_MS, &resp, err, errlen) != VK_OK)
        return -1;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return 0;
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
        if (present > 0)
            return 0;
        if (present == 0 && strcmp(policy, "Never") == 0) {
            snprintf(reason, rlen, "ErrImageNeverPull");
            snprintf(msg, mlen, "Container image \"%s\" is not present with pull policy of Never",
                     image);
            return -1;
        }
    }
    vk_info("pulling image", "pod=%s/%s image=%s", p->ns, p->name, image);
    if (pull(image, err, sizeof err) < 0) {
        snprintf(reason, rlen, "ErrImagePull");
        snprintf(msg, mlen, "failed to pull image \"%s\": %s", image, err);
        return -1;
    }
    snprintf(msg, mlen, "Successfully pulled image \"%s\"", image);
    vk_core_emit_event(provider, p->ns, p->name, p->uid, "Normal", "Pulled", msg);
    msg[0] = '\0';
    return 0;
}

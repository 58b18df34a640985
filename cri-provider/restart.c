/* restart.c -- when an exited container runs again: the pod's
 * restartPolicy, and the kubelet's crash-loop back-off.
 *
 * The back-off is the kubelet's: the first restart is immediate, then the
 * delay counts from the container's exit and doubles from 10 s up to 5 min.
 * A container that ran for 10 minutes before it exited starts over at the
 * first step, the way the kubelet forgets a back-off entry it has not
 * touched for twice the maximum delay.
 */
#include "cri.h"

#include <string.h>

#define BACKOFF_INITIAL_S 10
#define BACKOFF_MAX_S 300
#define BACKOFF_RESET_S (2 * BACKOFF_MAX_S)
/* The kubelet re-syncs a pod that failed on its configuration every 10 s
 * or so; half that brings a container up soon after its object appears. */
#define CONFIG_RETRY_S 5

bool restart_wanted(const cri_pod *p, const cri_ctr *c)
{
    const char *policy = p->pod->restart_policy ? p->pod->restart_policy : "Always";
    if (strcmp(policy, "Never") == 0)
        return false;
    /* An init container that succeeded is done whatever the policy; one
     * that failed runs again unless the policy is Never. */
    if (c->init || strcmp(policy, "OnFailure") == 0)
        return c->exit_code != 0;
    return true;
}

static void next_delay(cri_ctr *c, int64_t ran_ns)
{
    if (ran_ns >= BACKOFF_RESET_S * NS_PER_S)
        c->backoff_s = 0;
    else if (c->backoff_s == 0)
        c->backoff_s = -1;          /* first failure: restart at once */
    else if (c->backoff_s < 0)
        c->backoff_s = BACKOFF_INITIAL_S;
    else if (c->backoff_s < BACKOFF_MAX_S)
        c->backoff_s = c->backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : c->backoff_s * 2;
}

void restart_schedule(cri_ctr *c, int64_t now_ns)
{
    int64_t finished = c->finished_ns ? c->finished_ns : now_ns;
    int64_t ran = c->started_ns && finished > c->started_ns ? finished - c->started_ns : 0;
    next_delay(c, ran);
    if (c->backoff_s == 0)
        next_delay(c, 0);
    c->retry_at_ns = c->backoff_s > 0 ? finished + c->backoff_s * NS_PER_S : 0;
}

void restart_failed_start(cri_ctr *c, int64_t now_ns)
{
    next_delay(c, 0);
    c->retry_at_ns = c->backoff_s > 0 ? now_ns + c->backoff_s * NS_PER_S : 0;
}

void restart_config_retry(cri_ctr *c, int64_t now_ns)
{
    c->retry_at_ns = now_ns + CONFIG_RETRY_S * NS_PER_S;
}

/* ratelimit.c -- token bucket and backoff. */
#include "ratelimit.h"

#include <stdint.h>
#include <time.h>

/* Rounding: a timer set for exactly the computed wait may find 0.9999999
 * tokens; without the slack it would re-arm for a few nanoseconds. */
#define TOKEN_SLACK 1e-9

void tokenbucket_init(struct tokenbucket *tb, double qps, unsigned burst, double now)
{
    tb->qps = qps;
    tb->burst = burst ? burst : 1;
    tb->tokens = tb->burst;
    tb->last = now;
}

double tokenbucket_take(struct tokenbucket *tb, double now)
{
    if (tb->qps <= 0)
        return 0;
    /* A clock that went backwards (a test, a loop time refreshed late) adds
     * nothing rather than taking tokens away. */
    if (now > tb->last) {
        tb->tokens += (now - tb->last) * tb->qps;
        if (tb->tokens > tb->burst)
            tb->tokens = tb->burst;
        tb->last = now;
    }
    if (tb->tokens >= 1 - TOKEN_SLACK) {
        tb->tokens -= 1;
        if (tb->tokens < 0)
            tb->tokens = 0;
        return 0;
    }
    return (1 - tb->tokens) / tb->qps;
}

double rand_unit(uint64_t *rng)
{
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    /* The top 53 bits fill a double's mantissa exactly. */
    return (double)((x * UINT64_C(2685821657736338717)) >> 11) / 9007199254740992.0;
}

void backoff_init(struct backoff *b, double initial, double max, uint64_t seed)
{
    b->initial = initial;
    b->max = max < initial ? initial : max;
    b->current = 0;
    if (!seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)b;
    }
    b->rng = seed ? seed : 1;
}

double backoff_next(struct backoff *b)
{
    if (b->current <= 0)
        b->current = b->initial;
    else if (b->current < b->max)
        b->current *= 2;
    if (b->current > b->max)
        b->current = b->max;
    return b->current * (0.5 + 0.5 * rand_unit(&b->rng));
}

void backoff_reset(struct backoff *b)
{
    b->current = 0;
}

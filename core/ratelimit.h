/* ratelimit.h -- a token bucket, and capped exponential backoff with jitter.
 *
 * Neither reads a clock: callers pass the time (seconds, any monotonic
 * origin; ev_now() in the core), which keeps both deterministic in tests.
 */
#ifndef VKC_CORE_RATELIMIT_H
#define VKC_CORE_RATELIMIT_H

#include <stdint.h>

/* Requests per second on average, at most `burst` at once: client-go's
 * flowcontrol.NewTokenBucketRateLimiter. The bucket starts full. */
struct tokenbucket {
    double qps;     /* <= 0: unlimited, every take succeeds */
    double burst;   /* capacity, at least 1 */
    double tokens;  /* available now, fractional */
    double last;    /* when tokens was last brought up to date */
};

void tokenbucket_init(struct tokenbucket *tb, double qps, unsigned burst, double now);
/* Take one token: 0 when one was available (and is now spent), otherwise the
 * seconds until one will be (nothing is taken; ask again then). */
double tokenbucket_take(struct tokenbucket *tb, double now);

/* Capped exponential backoff: the n-th consecutive delay is drawn uniformly
 * from [d/2, d] with d = min(initial * 2^(n-1), max). Randomizing the lower
 * half spreads out clients that failed together (a restarted API server)
 * while `max` stays a hard cap. */
struct backoff {
    double initial;   /* seconds, > 0 */
    double max;       /* seconds, >= initial */
    double current;   /* d of the last delay, 0 after a reset */
    uint64_t rng;     /* jitter state; any value but 0 */
};

/* seed 0 picks one from the clock and the struct's address. */
void backoff_init(struct backoff *b, double initial, double max, uint64_t seed);
double backoff_next(struct backoff *b);
void backoff_reset(struct backoff *b);

/* Uniform in [0, 1) from the generator state *rng (xorshift64*, not for
 * secrets). Shared with callers that spread timeouts out. */
double rand_unit(uint64_t *rng);

#endif

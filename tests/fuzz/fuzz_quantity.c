/* fuzz_quantity.c -- vk_quantity_milli and vk_quantity_value.
 *
 * Quantities come from pod specs (resources, resourceFieldRef divisors)
 * and from the provider's Node (allocatable). The two functions read the
 * same number at two scales, both rounded away from zero, so:
 *   - whenever milli succeeds, value succeeds, and value is milli / 1000
 *     rounded away from zero;
 *   - whenever value is small enough that value * 1000 fits, milli succeeds;
 *   - the sign is the written sign (zero aside);
 *   - a leading zero, or a '+' on an unsigned quantity, changes nothing.
 */
#include <string.h>

#include "fuzz.h"
#include "pod.h"

typedef struct result {
    int rc_milli, rc_value;
    int64_t milli, value;
} result;

static result convert(const char *q)
{
    result r = {0, 0, 0, 0};
    r.rc_milli = vk_quantity_milli(q, &r.milli);
    r.rc_value = vk_quantity_value(q, &r.value);
    FUZZ_CHECK(r.rc_milli == 0 || r.rc_milli == -1);
    FUZZ_CHECK(r.rc_value == 0 || r.rc_value == -1);
    return r;
}

static int64_t div_away(int64_t v, int64_t d)
{
    int64_t q = v / d;
    if (v % d)
        q += v < 0 ? -1 : 1;
    return q;
}

static void check_same(const result *a, const result *b)
{
    FUZZ_CHECK(a->rc_milli == b->rc_milli && a->rc_value == b->rc_value);
    FUZZ_CHECK(a->rc_milli || a->milli == b->milli);
    FUZZ_CHECK(a->rc_value || a->value == b->value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Quantities longer than 64 bytes are refused outright; a little past
     * that is enough to cover the refusal. */
    if (size > 80)
        return 0;
    char *q = fuzz_cstr(data, size);
    result r = convert(q);
    if (r.rc_milli == 0) {
        FUZZ_CHECK(r.rc_value == 0);
        FUZZ_CHECK(r.value == div_away(r.milli, 1000));
    }
    if (r.rc_value == 0 && r.value > -(INT64_MAX / 1000) + 1 && r.value < INT64_MAX / 1000 - 1)
        FUZZ_CHECK(r.rc_milli == 0);
    if (r.rc_value == 0 && r.value < 0)
        FUZZ_CHECK(q[0] == '-');
    if (r.rc_milli == 0 && r.milli > 0)
        FUZZ_CHECK(q[0] != '-');

    /* Metamorphic variants, as long as they stay within the length limit. */
    size_t len = strlen(q);
    if (len < 60) {
        char variant[72];
        bool sign = q[0] == '+' || q[0] == '-';
        snprintf(variant, sizeof variant, "%.*s0%s", sign ? 1 : 0, q, q + (sign ? 1 : 0));
        result z = convert(variant);
        if (q[sign ? 1 : 0] >= '0' && q[sign ? 1 : 0] <= '9')
            check_same(&r, &z);
        if (!sign) {
            snprintf(variant, sizeof variant, "+%s", q);
            result p = convert(variant);
            check_same(&r, &p);
        }
    }
    free(q);
    return 0;
}

/* fuzz_duration.c -- flags_parse_duration, Go-style durations ("1m30s").
 *
 * Checked: a result is within [0, INT_MAX] ms; it reads back the same when
 * written as "<ms>ms"; and appending a zero term ("0s") changes nothing.
 */
#include <limits.h>
#include <string.h>

#include "flags.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Longer input only repeats terms. */
    if (size > 256)
        return 0;
    char *s = fuzz_cstr(data, size);
    int ms = -1;
    if (flags_parse_duration(s, &ms) == 0) {
        FUZZ_CHECK(ms >= 0);
        char text[32];
        snprintf(text, sizeof text, "%dms", ms);
        int back = -1;
        FUZZ_CHECK(flags_parse_duration(text, &back) == 0 && back == ms);

        if (strcmp(s, "0") != 0) {
            char longer[300];
            snprintf(longer, sizeof longer, "%s0s", s);
            int same = -1;
            FUZZ_CHECK(flags_parse_duration(longer, &same) == 0 && same == ms);
        }
    }
    free(s);
    return 0;
}

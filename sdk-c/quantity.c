/* quantity.c -- Kubernetes resource.Quantity strings as int64.
 *
 *   quantity ::= [+-] number suffix
 *   number   ::= digits | digits "." [digits] | "." digits
 *   suffix   ::= "" | n u m k M G T P E | Ki Mi Gi Ti Pi Ei | (e|E) [+-] digits
 *
 * The arithmetic is exact, on the decimal digits, so "0.1Gi" or "1.5e-3"
 * round the way Kubernetes rounds them: up, away from zero, to the unit
 * asked for. Canonical quantities (what the API server writes) are short;
 * longer input than MAX_LEN is refused rather than given a bigger buffer.
 */
#include "pod.h"

#include <string.h>

#define MAX_LEN 64

/* A parsed quantity: value = (neg ? -1 : 1) * 0.DIGITS * 10^exp10 * 2^exp2,
 * DIGITS without leading or trailing zeros (none at all for zero). */
struct quantity {
    bool neg;
    char digits[MAX_LEN];
    int ndigits;
    int exp10;
    int exp2;
};

static const struct {
    const char *name;
    int exp10, exp2;
} suffixes[] = {
    {"", 0, 0},   {"n", -9, 0}, {"u", -6, 0},  {"m", -3, 0},  {"k", 3, 0},
    {"M", 6, 0},  {"G", 9, 0},  {"T", 12, 0},  {"P", 15, 0},  {"E", 18, 0},
    {"Ki", 0, 10}, {"Mi", 0, 20}, {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50},
    {"Ei", 0, 60},
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "e3", "E-2", "e+10": the exponent, clamped to +-10000 (far past where any
 * int64 result is possible, and safe to add to). */
static int parse_exponent(const char *s, int *out)
{
    bool neg = false;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    if (!is_digit(*s))
        return -1;
    int e = 0;
    for (; is_digit(*s); s++)
        if (e < 10000)
            e = e * 10 + (*s - '0');
    if (*s)
        return -1;
    *out = neg ? -e : e;
    return 0;
}

static int parse(const char *s, struct quantity *q)
{
    if (strnlen(s, MAX_LEN + 1) > MAX_LEN)
        return -1;
    memset(q, 0, sizeof *q);
    if (*s == '+' || *s == '-')
        q->neg = *s++ == '-';

    bool any_digit = false;
    for (; is_digit(*s); s++) {
        any_digit = true;
        if (q->ndigits || *s != '0') {
            q->digits[q->ndigits++] = *s;
            q->exp10++;
        }
    }
    if (*s == '.') {
        for (s++; is_digit(*s); s++) {
            any_digit = true;
            if (q->ndigits || *s != '0')
                q->digits[q->ndigits++] = *s;
            else
                q->exp10--; /* a leading zero of the fraction */
        }
    }
    if (!any_digit)
        return -1;
    while (q->ndigits && q->digits[q->ndigits - 1] == '0')
        q->ndigits--;
    if (!q->ndigits)
        q->exp10 = 0;

    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        if (strcmp(s, suffixes[i].name) == 0) {
            q->exp10 += suffixes[i].exp10;
            q->exp2 = suffixes[i].exp2;
            return 0;
        }
    }
    int e;
    if ((*s == 'e' || *s == 'E') && parse_exponent(s + 1, &e) == 0) {
        q->exp10 += e;
        return 0;
    }
    return -1;
}

/* The value times 10^scale, rounded away from zero; -1 on overflow. */
static int scaled(const struct quantity *q, int scale, int64_t *out)
{
    if (!q->ndigits) {
        *out = 0;
        return 0;
    }
    /* The point sits after `point` digits. Far right of them, the checked
     * arithmetic overflows within 20 digits; far left (below -25), the
     * value is under 2^60 * 10^-25 < 1 and rounds to one unit. */
    int point = q->exp10 + scale;
    int64_t whole = 0;
    bool frac = true;
    if (point >= -25) {
        /* Integer part: the digits before the point, zero-padded. */
        for (int i = 0; i < point; i++) {
            int d = i < q->ndigits ? q->digits[i] - '0' : 0;
            if (__builtin_mul_overflow(whole, 10, &whole) ||
                __builtin_add_overflow(whole, d, &whole))
                return -1;
        }
        if (q->exp2 && whole > (INT64_MAX >> q->exp2))
            return -1;
        whole <<= q->exp2;

        /* Fraction digits, behind -point zeros when the point is left of
         * the digits; doubling them exp2 times carries 2^exp2 * fraction
         * into the integer part, exactly. */
        char f[25 + MAX_LEN];
        int nf = 0;
        for (int i = point; i < q->ndigits; i++)
            f[nf++] = i < 0 ? 0 : (char)(q->digits[i] - '0');
        int64_t carried = 0;
        for (int k = 0; k < q->exp2; k++) {
            int carry = 0;
            for (int i = nf - 1; i >= 0; i--) {
                int d = f[i] * 2 + carry;
                f[i] = (char)(d % 10);
                carry = d / 10;
            }
            carried = carried * 2 + carry;
        }
        frac = false;
        for (int i = 0; i < nf; i++)
            frac |= f[i] != 0;
        if (__builtin_add_overflow(whole, carried, &whole))
            return -1;
    }
    if (frac && __builtin_add_overflow(whole, 1, &whole))
        return -1;
    *out = q->neg ? -whole : whole;
    return 0;
}

int vk_quantity_milli(const char *s, int64_t *out)
{
    struct quantity q;
    return parse(s, &q) < 0 ? -1 : scaled(&q, 3, out);
}

int vk_quantity_value(const char *s, int64_t *out)
{
    struct quantity q;
    return parse(s, &q) < 0 ? -1 : scaled(&q, 0, out);
}

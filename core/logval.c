/* logval.c -- quote and escape one logfmt value. */
#include "logval.h"

#include <stdio.h>
#include <string.h>

const char *logval(char *buf, size_t cap, const char *s)
{
    int quote = s[0] == '\0';
    for (const char *p = s; *p && !quote; p++)
        quote = (unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f;
    size_t at = 0;
    /* Room for the closing quote and the NUL. */
    const size_t end = cap - 2;
    if (quote)
        buf[at++] = '"';
    for (; *s && at + 4 < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[at++] = '\\';
            buf[at++] = (char)c;
        } else if (c == '\n') {
            buf[at++] = '\\';
            buf[at++] = 'n';
        } else if (c < ' ' || c == 0x7f) {
            at += (size_t)snprintf(buf + at, cap - at, "\\x%02x", c);
        } else {
            buf[at++] = (char)c;
        }
    }
    if (quote)
        buf[at++] = '"';
    buf[at] = '\0';
    return buf;
}

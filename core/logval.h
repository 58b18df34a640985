/* logval.h -- a value from outside (a provider's name, an error message)
 * made safe for a logfmt key=value pair: quoted when it holds blanks,
 * quotes or '=', with quotes, backslashes and control characters escaped,
 * so it can neither break the line nor forge another. */
#ifndef VKC_CORE_LOGVAL_H
#define VKC_CORE_LOGVAL_H

#include <stddef.h>

/* Write the value into buf (truncated to fit) and return buf. */
const char *logval(char *buf, size_t cap, const char *s);

/* Enough for one value in a log line. */
#define LOGVAL_MAX 256

#endif

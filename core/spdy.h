/* spdy.h -- the core's SPDY/3.1 is sdk-c's (sdk-c/spdy.h), which
 * vkc-provider-cri shares as a client; the core uses its server sessions.
 * This name stays so the core's sources and tests include it as before. */
#ifndef VKC_CORE_SPDY_H
#define VKC_CORE_SPDY_H

#include "../sdk-c/spdy.h"

#endif

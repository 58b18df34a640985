/* intern.h -- one shared copy of a string that many places hold.
 *
 * A pod's uid is kept by its entry's API copy, by the incarnation the
 * provider runs, by its references (in the entry and in refs.c), its
 * status order and its status slot: six 48-byte copies of the same 36
 * characters per pod, a sixth of what the core held for a pod at rest.
 * Interned, they are one.
 *
 *   const char *u = intern(uid);     // one reference, NULL: out of memory
 *   ...
 *   unintern(u);                     // the last one frees it
 *
 * Equal strings give the same pointer. Thread-safe.
 */
#ifndef VKC_CORE_INTERN_H
#define VKC_CORE_INTERN_H

const char *intern(const char *s);
/* Release one reference taken by intern; NULL is ignored. */
void unintern(const char *s);

#endif

/* podkey.h -- a pod's key "namespace/name" and its two parts, in one
 * allocation: the pod entry and the status slot each hold all three for
 * every pod, three allocations apiece before. */
#ifndef VKC_CORE_PODKEY_H
#define VKC_CORE_PODKEY_H

/* "ns/name", with *ns_out and *name_out pointing into the same block;
 * free() the key alone. NULL when memory ran out. */
char *podkey_new(const char *ns, const char *name, const char **ns_out, const char **name_out);
/* The same from a key "ns/name" (split at its first '/'); NULL when memory
 * ran out or the key has no '/'. */
char *podkey_split(const char *key, const char **ns_out, const char **name_out);

#endif

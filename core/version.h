/* version.h -- what this core calls itself and which contract it speaks. */
#ifndef VKC_CORE_VERSION_H
#define VKC_CORE_VERSION_H

#define VKC_CORE_VERSION "0.1.0-dev"

/* PROTOCOL_VERSION_CURRENT of proto/provider.proto as this core knows it. */
#define VKC_PROTOCOL_VERSION 1u

#endif

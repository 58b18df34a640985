/* buf.h -- a growable byte buffer, always NUL-terminated. */
#ifndef VKC_BUF_H
#define VKC_BUF_H

#include <stddef.h>

typedef struct vk_buf {
    char *data;   /* NULL until something is appended */
    size_t len;
    size_t cap;
} vk_buf;

#define VK_BUF_INIT {NULL, 0, 0}

/* Each returns 0, or -1 when memory ran out (the buffer is unchanged). */
int vk_buf_append(vk_buf *b, const void *data, size_t len);
int vk_buf_puts(vk_buf *b, const char *s);
int vk_buf_printf(vk_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void vk_buf_reset(vk_buf *b);           /* len = 0, keeps memory */
void vk_buf_free(vk_buf *b);
/* Hand the bytes to the caller (who frees them) and empty the buffer. */
char *vk_buf_steal(vk_buf *b, size_t *len);

#endif

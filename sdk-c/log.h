/* log.h -- structured logs: one line per event, logfmt.
 *
 *   ts=2026-11-28T09:00:00.123Z level=info msg="provider started" pid=42
 *
 * Quiet by default (level info shows starts, stops and problems; debug shows
 * every RPC). Never log secret material: callers pass names, not values.
 */
#ifndef VKC_LOG_H
#define VKC_LOG_H

enum vk_log_level { VK_LOG_DEBUG, VK_LOG_INFO, VK_LOG_WARN, VK_LOG_ERROR };

/* "debug", "info", "warn", "error": 0, or -1 for an unknown name. */
int vk_log_set_level_name(const char *name);
void vk_log_set_level(enum vk_log_level level);
int vk_log_enabled(enum vk_log_level level);
/* Prefix every line with component=NAME (e.g. "core", "mock"). */
void vk_log_set_component(const char *name);

/* msg is quoted as needed; kv is a printf format for the key=value tail,
 * NULL for none. Thread-safe: a line is written with one write(2). */
void vk_log(enum vk_log_level level, const char *msg, const char *kv, ...)
    __attribute__((format(printf, 3, 4)));

#define vk_debug(msg, ...) \
    do { if (vk_log_enabled(VK_LOG_DEBUG)) vk_log(VK_LOG_DEBUG, msg, __VA_ARGS__); } while (0)
#define vk_info(msg, ...) vk_log(VK_LOG_INFO, msg, __VA_ARGS__)
#define vk_warn(msg, ...) vk_log(VK_LOG_WARN, msg, __VA_ARGS__)
#define vk_error(msg, ...) vk_log(VK_LOG_ERROR, msg, __VA_ARGS__)

#endif

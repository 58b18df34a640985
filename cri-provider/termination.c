/* termination.c -- how containers and pods end beyond their exit code:
 * the termination message a container leaves, and the pod's
 * activeDeadlineSeconds.
 *
 * The message: every container gets a file of its own in the pod directory
 * bind-mounted at its terminationMessagePath (/dev/termination-log unless
 * the spec says otherwise; see spec.c). After an exit the kubelet reads at
 * most the last 4 KiB of it; with terminationMessagePolicy
 * FallbackToLogsOnError, a failed container that wrote nothing there gets
 * the end of its log instead (80 lines, 2 KiB).
 */
#include "cri.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define MAX_MESSAGE 4096
#define FALLBACK_LINES 80
#define FALLBACK_BYTES 2048

/* The last max bytes of a file into out. */
static void read_end(const char *path, size_t max, vk_buf *out)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    char buf[MAX_MESSAGE];
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t from = st.st_size > (off_t)max ? st.st_size - (off_t)max : 0;
        ssize_t n = pread(fd, buf, max < sizeof buf ? max : sizeof buf, from);
        if (n > 0)
            vk_buf_append(out, buf, (size_t)n);
    }
    close(fd);
}

void termination_message(const cri_pod *p, const char *ctr, uint32_t attempt,
                         int32_t exit_code, const char *reason, char *msg, size_t n)
{
    yajl_val cj = spec_container_json(p, ctr);
    const char *policy = vk_json_str(vk_json_member(cj, "terminationMessagePolicy"), "File");
    char path[600];
    vk_buf text = VK_BUF_INIT;
    pod_termination_path(p, ctr, attempt, path, sizeof path);
    read_end(path, MAX_MESSAGE, &text);
    if (!text.len && exit_code != 0 && strcmp(policy, "FallbackToLogsOnError") == 0 &&
        strcmp(reason, "ContainerCannotRun") != 0) {
        pod_log_path(p, ctr, attempt, path, sizeof path);
        logs_tail(path, FALLBACK_LINES, FALLBACK_BYTES, &text);
    }
    if (text.len) {
        size_t have = strnlen(msg, n);
        snprintf(msg + have, n - have, "%s%.*s", have ? ": " : "", (int)text.len, text.data);
    }
    vk_buf_free(&text);
}

bool termination_deadline_passed(const cri_pod *p, int64_t now_ns)
{
    yajl_val v = vk_json_get(p->spec, "spec", "activeDeadlineSeconds", NULL);
    int64_t d = vk_json_int(v, -1);
    return v && d >= 0 && p->start_s && now_ns / NS_PER_S - p->start_s >= d;
}

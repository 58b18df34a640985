/* command.c -- word splitting for --provider-cmd, and PATH lookup. */
#include "command.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

void command_free(char **argv)
{
    if (!argv)
        return;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
}

static int push(char ***argv, size_t *n, vk_buf *word)
{
    char **grown = realloc(*argv, (*n + 2) * sizeof **argv);
    if (!grown)
        return -1;
    *argv = grown;
    grown[*n] = vk_buf_steal(word, NULL);
    if (!grown[*n])
        return -1;
    grown[++*n] = NULL;
    return 0;
}

/* Append the quoted text after the opening quote at *p; *p ends after the
 * closing quote. */
static int quoted(const char **p, vk_buf *w, const char **err)
{
    char q = *(*p)++;
    for (;;) {
        char c = **p;
        if (c == '\0') {
            *err = q == '\'' ? "unterminated single quote" : "unterminated double quote";
            return -1;
        }
        (*p)++;
        if (c == q)
            return 0;
        if (q == '"' && c == '\\' && **p && strchr("\"\\$`", **p))
            c = *(*p)++;
        if (vk_buf_append(w, &c, 1) < 0) {
            *err = "out of memory";
            return -1;
        }
    }
}

int command_split(const char *line, char ***argv_out, const char **err)
{
    char **argv = NULL;
    size_t n = 0;
    vk_buf w = VK_BUF_INIT;
    int in_word = 0;
    const char *p = line;

    *err = "out of memory";
    for (;;) {
        char c = *p;
        if (c == '\0' || c == ' ' || c == '\t' || c == '\n') {
            if (in_word && push(&argv, &n, &w) < 0)
                goto fail;
            in_word = 0;
            if (c == '\0')
                break;
            p++;
        } else if (c == '\'' || c == '"') {
            in_word = 1;
            if (quoted(&p, &w, err) < 0)
                goto fail;
        } else if (strchr("|&;<>()$`", c)) {
            *err = "shell syntax is not supported (run the command through sh -c)";
            goto fail;
        } else {
            if (c == '\\' && p[1])
                c = *++p;
            in_word = 1;
            p++;
            if (vk_buf_append(&w, &c, 1) < 0)
                goto fail;
        }
    }
    if (n == 0) {
        *err = "empty command";
        goto fail;
    }
    *argv_out = argv;
    return 0;
fail:
    vk_buf_free(&w);
    command_free(argv);
    return -1;
}

static int executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

char *command_resolve(const char *argv0)
{
    if (strchr(argv0, '/'))
        return executable(argv0) ? strdup(argv0) : NULL;
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        vk_buf full = VK_BUF_INIT;
        /* An empty PATH entry means the current directory. */
        if (vk_buf_printf(&full, "%.*s/%s", len ? (int)len : 1, len ? path : ".", argv0) < 0)
            return NULL;
        if (executable(full.data))
            return vk_buf_steal(&full, NULL);
        vk_buf_free(&full);
        path += len;
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* fuzz_command.c -- command_split, the --provider-cmd word splitter.
 *
 * Checked: a split yields at least one word and no NULL; a refusal says
 * why; and splitting is the inverse of quoting: the words, each
 * single-quoted (with ' written as '\''), split back into the same words.
 */
#include <string.h>

#include "buf.h"
#include "command.h"
#include "fuzz.h"

static void quote_word(vk_buf *line, const char *w)
{
    FUZZ_CHECK(vk_buf_puts(line, "'") == 0);
    for (const char *p = w; *p; p++)
        FUZZ_CHECK((*p == '\'' ? vk_buf_puts(line, "'\\''")
                               : vk_buf_append(line, p, 1)) == 0);
    FUZZ_CHECK(vk_buf_puts(line, "' ") == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fuzz_cstr(data, size);
    char **argv = NULL;
    const char *err = NULL;
    if (command_split(line, &argv, &err) < 0) {
        FUZZ_CHECK(err && *err);
        free(line);
        return 0;
    }
    FUZZ_CHECK(argv && argv[0]);
    vk_buf quoted = VK_BUF_INIT;
    size_t n = 0;
    for (; argv[n]; n++)
        quote_word(&quoted, argv[n]);

    char **again = NULL;
    FUZZ_CHECK(command_split(quoted.data, &again, &err) == 0);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(again[i] && strcmp(again[i], argv[i]) == 0);
    FUZZ_CHECK(again[n] == NULL);

    command_free(again);
    vk_buf_free(&quoted);
    command_free(argv);
    free(line);
    return 0;
}

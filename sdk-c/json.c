/* json.c -- yajl helpers: bounded parsing, lookups, re-emitting, writing. */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- parsing ------------------------------------------------------------ */

/* yajl_tree_parse stops at the first NUL, accepts comments, and builds and
 * frees its tree recursively with no depth bound. Refuse all three before
 * handing the text over. A byte scan is enough: on valid JSON it follows
 * strings and nesting exactly, and invalid JSON fails the parse anyway.
 * (About a tenth of the parse; strcspn-based skipping measured slower on
 * pod documents, whose strings are short.) */
static const char *prescan(const char *s, size_t len, size_t *at)
{
    const char *nul = memchr(s, '\0', len);
    if (nul) {
        *at = (size_t)(nul - s);
        return "NUL byte";
    }
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > VK_JSON_MAX_DEPTH) {
                *at = i;
                return "nested too deeply";
            }
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == '/') {
            *at = i;
            return "comments are not JSON";
        }
    }
    return NULL;
}

/* yajl_tree_parse reports errors over several lines with no offset. Failure
 * is the rare path, so parse again without building anything to learn where
 * and why, in one line. */
static void describe_error(const char *text, size_t len, const char *tree_err,
                           char *err, size_t errlen)
{
    yajl_handle h = yajl_alloc(NULL, NULL, NULL);
    if (!h) {
        set_err(err, errlen, "parse error: out of memory");
        return;
    }
    size_t at = len;
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    else
        at = yajl_get_bytes_consumed(h);
    if (st == yajl_status_ok) {
        /* The text is fine: the tree builder itself failed (memory). */
        size_t n = strcspn(tree_err, "\n");
        set_err(err, errlen, "parse error: %.*s", (int)n, tree_err);
    } else {
        unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
        /* "lexical error: invalid char in json text.\n" -> the part after
         * the first ": ", without the trailing period and newline. */
        const char *m = msg ? (const char *)msg : "invalid JSON";
        const char *colon = strstr(m, ": ");
        if (colon)
            m = colon + 2;
        size_t n = strcspn(m, "\n");
        while (n && m[n - 1] == '.')
            n--;
        set_err(err, errlen, "parse error at byte %zu: %.*s", at, (int)n, m);
        if (msg)
            yajl_free_error(h, msg);
    }
    yajl_free(h);
}

yajl_val vk_json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    size_t at = 0;
    const char *why = prescan(text, len, &at);
    if (why) {
        set_err(err, errlen, "parse error at byte %zu: %s", at, why);
        return NULL;
    }
    char tree_err[256];
    yajl_val v = yajl_tree_parse(text, tree_err, sizeof tree_err);
    if (!v)
        describe_error(text, len, tree_err, err, errlen);
    return v;
}

yajl_val vk_json_parse_bytes(const void *data, size_t len, char *err, size_t errlen)
{
    char *copy = len < SIZE_MAX ? malloc(len + 1) : NULL;
    if (!copy) {
        set_err(err, errlen, "parse error: out of memory");
        return NULL;
    }
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    yajl_val v = vk_json_parse(copy, len, err, errlen);
    free(copy);
    return v;
}

/* ---- lookups ------------------------------------------------------------ */

yajl_val vk_json_member(yajl_val v, const char *key)
{
    if (!YAJL_IS_OBJECT(v))
        return NULL;
    for (size_t i = v->u.object.len; i-- > 0;)
        if (strcmp(v->u.object.keys[i], key) == 0)
            return v->u.object.values[i];
    return NULL;
}

yajl_val vk_json_get(yajl_val v, ...)
{
    va_list ap;
    va_start(ap, v);
    const char *key;
    while (v && (key = va_arg(ap, const char *)))
        v = vk_json_member(v, key);
    va_end(ap);
    return v;
}

const char *vk_json_str(yajl_val v, const char *def)
{
    return YAJL_IS_STRING(v) ? v->u.string : def;
}

int64_t vk_json_int(yajl_val v, int64_t def)
{
    return YAJL_IS_INTEGER(v) ? (int64_t)v->u.number.i : def;
}

bool vk_json_bool(yajl_val v, bool def)
{
    if (YAJL_IS_TRUE(v))
        return true;
    if (YAJL_IS_FALSE(v))
        return false;
    return def;
}

/* ---- emitting ------------------------------------------------------------ */

static yajl_gen_status gen_cstr(yajl_gen g, const char *s)
{
    return yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* Recursion is bounded: yajl_gen refuses to open more than YAJL_MAX_DEPTH
 * levels, and the refusal ends the walk. */
yajl_gen_status vk_json_gen_tree(yajl_gen g, yajl_val v)
{
    yajl_gen_status st;
    if (!v)
        return yajl_gen_null(g);
    switch (v->type) {
    case yajl_t_string:
        return gen_cstr(g, v->u.string);
    case yajl_t_number:
        return yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
    case yajl_t_object:
        if ((st = yajl_gen_map_open(g)) != yajl_gen_status_ok)
            return st;
        for (size_t i = 0; i < v->u.object.len; i++) {
            if ((st = gen_cstr(g, v->u.object.keys[i])) != yajl_gen_status_ok ||
                (st = vk_json_gen_tree(g, v->u.object.values[i])) != yajl_gen_status_ok)
                return st;
        }
        return yajl_gen_map_close(g);
    case yajl_t_array:
        if ((st = yajl_gen_array_open(g)) != yajl_gen_status_ok)
            return st;
        for (size_t i = 0; i < v->u.array.len; i++)
            if ((st = vk_json_gen_tree(g, v->u.array.values[i])) != yajl_gen_status_ok)
                return st;
        return yajl_gen_array_close(g);
    case yajl_t_true:
        return yajl_gen_bool(g, 1);
    case yajl_t_false:
        return yajl_gen_bool(g, 0);
    default: /* yajl_t_null; yajl_t_any is a query type, never a node */
        return yajl_gen_null(g);
    }
}

/* ---- UTF-8 and quoting --------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence starting s[0..n), n > 0; 0 when
 * there is none (RFC 3629: no overlong forms, surrogates or code points
 * above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* Length of the longest valid UTF-8 prefix of s[0..n). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(s + i, n - i);
        if (!k)
            break;
        i += k;
    }
    return i;
}

int vk_json_quote(vk_buf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t start = out->len;
    size_t run = 0; /* start of the bytes still to copy as they are */
    int rc = vk_buf_append(out, "\"", 1);
    for (size_t i = 0; rc == 0 && i < len;) {
        unsigned char c = p[i];
        size_t n = 1;
        const char *esc = NULL;
        char hex[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(hex, sizeof hex, "\\u%04x", c);
                esc = hex;
            } else if (c >= 0x80 && (n = utf8_seq(p + i, len - i)) == 0) {
                esc = "\\ufffd";
                n = 1;
            }
        }
        if (esc) {
            rc = vk_buf_append(out, s + run, i - run);
            if (rc == 0)
                rc = vk_buf_puts(out, esc);
            run = i + n;
        }
        i += n;
    }
    if (rc == 0)
        rc = vk_buf_append(out, s + run, len - run);
    if (rc == 0)
        rc = vk_buf_append(out, "\"", 1);
    if (rc < 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

/* ---- writer ------------------------------------------------------------- */

static void writer_print(void *ctx, const char *s, size_t len)
{
    vk_json_writer *w = ctx;
    if (!w->failed && vk_buf_append(w->out, s, len) < 0)
        w->failed = true;
}

int vk_jw_begin(vk_json_writer *w, vk_buf *out)
{
    w->out = out;
    w->start = out->len;
    w->g = yajl_gen_alloc(NULL);
    w->failed = w->g == NULL;
    if (w->failed)
        return -1;
    yajl_gen_config(w->g, yajl_gen_print_callback, writer_print, w);
    return 0;
}

int vk_jw_end(vk_json_writer *w)
{
    if (w->g)
        yajl_gen_free(w->g);
    w->g = NULL;
    if (!w->failed)
        return 0;
    w->out->len = w->start;
    if (w->out->data)
        w->out->data[w->start] = '\0';
    return -1;
}

void vk_jw_check(vk_json_writer *w, yajl_gen_status st)
{
    if (st != yajl_gen_status_ok)
        w->failed = true;
}

void vk_jw_map_open(vk_json_writer *w)
{
    if (!w->failed)
        vk_jw_check(w, yajl_gen_map_open(w->g));
}

void vk_jw_map_close(vk_json_writer *w)
{
    if (!w->failed)
        vk_jw_check(w, yajl_gen_map_close(w->g));
}

void vk_jw_array_open(vk_json_writer *w)
{
    if (!w->failed)
        vk_jw_check(w, yajl_gen_array_open(w->g));
}

void vk_jw_array_close(vk_json_writer *w)
{
    if (!w->failed)
        vk_jw_check(w, yajl_gen_array_close(w->g));
}

void vk_jw_str(vk_json_writer *w, const char *s)
{
    if (w->failed)
        return;
    if (!s) {
        vk_jw_check(w, yajl_gen_null(w->g));
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    size_t ok = utf8_valid_prefix(p, len);
    if (ok == len) {
        vk_jw_check(w, yajl_gen_string(w->g, p, len));
        return;
    }
    /* Rare: runtime messages and log-derived text can carry any bytes. */
    vk_buf fixed = VK_BUF_INIT;
    int rc = 0;
    size_t i = 0;
    while (rc == 0 && i < len) {
        ok = utf8_valid_prefix(p + i, len - i);
        rc = vk_buf_append(&fixed, p + i, ok);
        i += ok;
        if (rc == 0 && i < len) {
            rc = vk_buf_append(&fixed, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    if (rc < 0)
        w->failed = true;
    else
        vk_jw_check(w, yajl_gen_string(w->g, (const unsigned char *)fixed.data, fixed.len));
    vk_buf_free(&fixed);
}

void vk_jw_int(vk_json_writer *w, int64_t v)
{
    if (!w->failed)
        vk_jw_check(w, yajl_gen_integer(w->g, (long long)v));
}

void vk_jw_bool(vk_json_writer *w, bool v)
{
    if (!w->failed)
        vk_jw_check(w, yajl_gen_bool(w->g, v));
}

void vk_jw_tree(vk_json_writer *w, yajl_val v)
{
    if (!w->failed)
        vk_jw_check(w, vk_json_gen_tree(w->g, v));
}

void vk_jw_kv_str(vk_json_writer *w, const char *key, const char *s)
{
    if (!s)
        return;
    vk_jw_str(w, key);
    vk_jw_str(w, s);
}

void vk_jw_kv_int(vk_json_writer *w, const char *key, int64_t v)
{
    vk_jw_str(w, key);
    vk_jw_int(w, v);
}

void vk_jw_kv_bool(vk_json_writer *w, const char *key, bool v)
{
    vk_jw_str(w, key);
    vk_jw_bool(w, v);
}

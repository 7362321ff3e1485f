/* control_file.c — `<log_dir>/gpufl-control.json` read in C: the injection build's capture controller
 * (capture_modes.c) has no Python and so no json module. One JSON object, the same fields as
 * gpufl.client.capture.Capture.poll_control_file reads (docs/capture-modes.md): `id` (a string or a number,
 * required), `seconds` / `steps` (a number or a numeric string), `requester` (a string or a number),
 * `session_id` (a string), `session_ids` (remote capture's list of some of the folder's sessions: whether it
 * names this session) and `engines` (a list of tracing, sass, pc_sampling). Other keys are skipped whatever
 * they hold. The file is written by someone else
 * (issue #22's agent, or a person): anything malformed is refused with the reason, never trusted, never a
 * crash: bounded nesting, bounded strings, UTF-8 checked (the strings go into JSON lines as they are). */
#include "gpufl_native.h"

#define TOO_LONG "a string longer than 256 bytes"

typedef struct {
    const char *s, *end;
    const char *err;
} Json;

static void ws(Json *j) {
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r')) j->s++;
}

static int fail(Json *j, const char *why) {
    if (!j->err) j->err = why;
    return -1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(Json *j, unsigned *out) {
    if (j->end - j->s < 4) return fail(j, "a truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->s[i]);
        if (h < 0) return fail(j, "a bad \\u escape");
        v = v << 4 | (unsigned)h;
    }
    j->s += 4;
    *out = v;
    return 0;
}

static void put_utf8(char *out, size_t cap, size_t *n, unsigned cp) {
    char tmp[4];
    size_t k;
    if (cp < 0x80) tmp[0] = (char)cp, k = 1;
    else if (cp < 0x800) tmp[0] = (char)(0xC0 | cp >> 6), tmp[1] = (char)(0x80 | (cp & 63)), k = 2;
    else if (cp < 0x10000)
        tmp[0] = (char)(0xE0 | cp >> 12), tmp[1] = (char)(0x80 | (cp >> 6 & 63)), tmp[2] = (char)(0x80 | (cp & 63)), k = 3;
    else
        tmp[0] = (char)(0xF0 | cp >> 18), tmp[1] = (char)(0x80 | (cp >> 12 & 63)),
        tmp[2] = (char)(0x80 | (cp >> 6 & 63)), tmp[3] = (char)(0x80 | (cp & 63)), k = 4;
    for (size_t i = 0; i < k; i++) {
        if (*n + 1 < cap && out) out[*n] = tmp[i];
        (*n)++;
    }
}

/* The length of the valid UTF-8 sequence at p (≤ end), 0 if it is not one. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
    size_t k = *p < 0xC2 ? 0 : *p < 0xE0 ? 2 : *p < 0xF0 ? 3 : *p < 0xF5 ? 4 : 0;
    if (!k || (size_t)(end - p) < k) return 0;
    for (size_t i = 1; i < k; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (k == 3 && ((*p == 0xE0 && p[1] < 0xA0) || (*p == 0xED && p[1] >= 0xA0))) return 0; /* overlong, surrogate */
    if (k == 4 && ((*p == 0xF0 && p[1] < 0x90) || (*p == 0xF4 && p[1] >= 0x90))) return 0;
    return k;
}

/* A JSON string at j->s (after its opening quote) into out (cap bytes, NUL-terminated; out may be NULL to
 * skip it); -1 when malformed or longer than cap - 1 bytes. */
static int string(Json *j, char *out, size_t cap) {
    size_t n = 0;
    while (j->s < j->end) {
        unsigned char c = (unsigned char)*j->s;
        if (c == '"') {
            j->s++;
            if (out && n >= cap) return fail(j, TOO_LONG);
            if (out) out[n] = 0;
            return 0;
        }
        if (c < 0x20) return fail(j, "a control character in a string");
        if (c == '\\') {
            if (++j->s >= j->end) break;
            char e = *j->s++;
            unsigned cp = 0;
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char real[] = "\"\\/\b\f\n\r\t";
                cp = (unsigned char)real[simple - "\"\\/bfnrt"];
            } else if (e == 'u') {
                if (hex4(j, &cp)) return -1;
                if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair */
                    unsigned lo = 0;
                    if (j->end - j->s < 2 || j->s[0] != '\\' || j->s[1] != 'u') return fail(j, "a lone surrogate");
                    j->s += 2;
                    if (hex4(j, &lo)) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return fail(j, "a lone surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return fail(j, "a lone surrogate");
                }
                if (cp == 0) return fail(j, "a NUL character in a string");
            } else {
                return fail(j, "a bad escape in a string");
            }
            put_utf8(out, cap, &n, cp);
            continue;
        }
        size_t k = c < 0x80 ? 1 : utf8_len((const unsigned char *)j->s, (const unsigned char *)j->end);
        if (!k) return fail(j, "not UTF-8");
        for (size_t i = 0; i < k; i++, n++)
            if (out && n + 1 < cap) out[n] = j->s[i];
        j->s += k;
    }
    return fail(j, "an unterminated string");
}

/* A JSON number's text at j->s into out (cap bytes); -1 when it is not one. */
static int number(Json *j, char *out, size_t cap) {
    const char *p = j->s;
    if (p < j->end && *p == '-') p++;
    if (p >= j->end || *p < '0' || *p > '9') return fail(j, "not a JSON value");
    if (*p == '0') p++;
    else
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    if (p < j->end && *p == '.') {
        if (++p >= j->end || *p < '0' || *p > '9') return fail(j, "a bad number");
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-')) p++;
        if (p >= j->end || *p < '0' || *p > '9') return fail(j, "a bad number");
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    size_t n = (size_t)(p - j->s);
    if (out && n >= cap) return fail(j, "a number too long");
    if (out) memcpy(out, j->s, n), out[n] = 0;
    j->s = p;
    return 0;
}

enum { V_STRING, V_NUMBER, V_LITERAL, V_NULL, V_NESTED };

static int literal(Json *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->s) < n || memcmp(j->s, word, n)) return fail(j, "not a JSON value");
    j->s += n;
    return 0;
}

static int value(Json *j, char *out, size_t cap, int *type, int depth);

/* An array or object at j->s, skipped (keys other than ours may hold anything). */
static int nested(Json *j, int depth) {
    if (depth > 32) return fail(j, "nested too deep");
    char close = *j->s == '{' ? '}' : ']';
    int object = close == '}', t;
    j->s++;
    ws(j);
    if (j->s < j->end && *j->s == close) return j->s++, 0;
    for (;;) {
        if (object) {
            ws(j);
            if (j->s >= j->end || *j->s != '"') return fail(j, "an object key is not a string");
            j->s++;
            if (string(j, NULL, 0)) return -1;
            ws(j);
            if (j->s >= j->end || *j->s++ != ':') return fail(j, "no ':' after an object key");
        }
        if (value(j, NULL, 0, &t, depth + 1)) return -1;
        ws(j);
        if (j->s < j->end && *j->s == ',') {
            j->s++;
            continue;
        }
        if (j->s < j->end && *j->s == close) return j->s++, 0;
        return fail(j, "a bad array or object");
    }
}

static int value(Json *j, char *out, size_t cap, int *type, int depth) {
    ws(j);
    if (j->s >= j->end) return fail(j, "a value is missing");
    char c = *j->s;
    if (c == '"') return j->s++, *type = V_STRING, string(j, out, cap);
    if (c == '{' || c == '[') return *type = V_NESTED, nested(j, depth);
    if (c == 't' || c == 'f') return *type = V_LITERAL, literal(j, c == 't' ? "true" : "false");
    if (c == 'n') return *type = V_NULL, literal(j, "null");
    *type = V_NUMBER;
    return number(j, out, cap);
}

/* `seconds` / `steps`: a number or a string holding one (Python's float() / int() take both), finite and
 * small enough for nanoseconds in 64 bits. */
static int numeric(Json *j, const char *text, int type, int sec, double *out) {
    const char *bad = sec ? "seconds is not a number" : "steps is not a number";
    if (type != V_NUMBER && type != V_STRING) return fail(j, bad);
    char *endp = NULL;
    errno = 0;
    double v = strtod(text, &endp);
    while (endp && (*endp == ' ' || *endp == '\t' || *endp == '\n')) endp++;
    if (!*text || endp == text || *endp || v != v) return fail(j, bad);
    if (errno || v > 1e9 || v < -1e9) return fail(j, sec ? "seconds out of range" : "steps out of range");
    *out = v;
    return 0;
}

/* `engines` or `session_ids`: null (as absent) or a list of strings. Engines are known names only (the
 * agent sends no others; Python would list an unknown one as missing): another name refuses the file. */
static int names(Json *j, ControlRequest *r, int engines, const char *me) {
    const char *bad = engines ? "engines: want a list of strings" : "session_ids: want a list of strings";
    ws(j);
    if (j->s < j->end && *j->s == 'n') return literal(j, "null");
    if (j->s >= j->end || *j->s != '[') return fail(j, bad);
    j->s++;
    ws(j);
    if (j->s < j->end && *j->s == ']') j->s++;
    else
        for (;;) {
            char text[CAP_STR];
            ws(j);
            if (j->s >= j->end || *j->s != '"') return fail(j, bad);
            j->s++;
            if (string(j, text, sizeof text)) return -1;
            if (engines) {
                unsigned bit = !strcmp(text, "tracing") ? CAP_E_TRACING : !strcmp(text, "sass") ? CAP_E_SASS
                               : !strcmp(text, "pc_sampling") ? CAP_E_PC_SAMPLING : 0;
                if (!bit) return fail(j, "engines: an engine other than tracing, sass, pc_sampling");
                r->engines |= bit;
            } else if (me && !strcmp(text, me)) {
                r->names_me = 1;
            }
            ws(j);
            if (j->s < j->end && *j->s == ',') {
                j->s++;
                continue;
            }
            if (j->s < j->end && *j->s == ']') {
                j->s++;
                break;
            }
            return fail(j, bad);
        }
    if (!engines) r->has_session_ids = 1;
    return 0;
}

static int member(Json *j, ControlRequest *r, const char *me) {
    char key[32], text[CAP_STR];
    int type;
    if (string(j, key, sizeof key)) {
        if (strcmp(j->err, TOO_LONG)) return -1;
        j->err = NULL; /* a long key is just not one of ours */
        key[0] = 0;
    }
    ws(j);
    if (j->s >= j->end || *j->s++ != ':') return fail(j, "no ':' after an object key");
    if (!strcmp(key, "engines") || !strcmp(key, "session_ids")) return names(j, r, key[0] == 'e', me);
    int ours = !strcmp(key, "id") || !strcmp(key, "requester") || !strcmp(key, "session_id") ||
               !strcmp(key, "seconds") || !strcmp(key, "steps");
    if (value(j, ours ? text : NULL, ours ? sizeof text : 0, &type, 1)) return -1; /* others: skipped */
    if (!ours) return 0;
    int str_or_num = type == V_STRING || type == V_NUMBER;
    if (!strcmp(key, "id")) {
        if (!str_or_num) return fail(j, "id is not a string");
        memcpy(r->id, text, sizeof text);
        r->has_id = 1;
    } else if (!strcmp(key, "requester")) {
        if (type != V_NULL && !str_or_num) return fail(j, "requester is not a string");
        r->has_requester = type != V_NULL;
        if (r->has_requester) memcpy(r->requester, text, sizeof text);
    } else if (!strcmp(key, "session_id")) {
        r->has_session = type != V_NULL;
        r->session_is_string = type == V_STRING;
        if (type == V_STRING) memcpy(r->session_id, text, sizeof text);
    } else if (!strcmp(key, "seconds") || !strcmp(key, "steps")) {
        int sec = key[1] == 'e';
        double v = 0;
        if (type != V_NULL && numeric(j, text, type, sec, &v)) return -1;
        if (sec) r->has_seconds = type != V_NULL, r->seconds = v;
        else r->has_steps = type != V_NULL, r->steps = v;
    }
    return 0;
}

int control_parse(const char *s, size_t n, ControlRequest *r, const char *me, char *err, size_t errn) {
    Json j = {s, s + n, NULL};
    memset(r, 0, sizeof *r);
    if (n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) j.s += 3; /* a byte-order mark, as Python's json.loads(bytes) allows */
    ws(&j);
    if (j.s >= j.end || *j.s != '{') fail(&j, "not a JSON object");
    else {
        j.s++;
        ws(&j);
        if (j.s < j.end && *j.s == '}') j.s++;
        else
            for (;;) {
                ws(&j);
                if (j.s >= j.end || *j.s != '"') {
                    fail(&j, "an object key is not a string");
                    break;
                }
                j.s++;
                if (member(&j, r, me)) break;
                ws(&j);
                if (j.s < j.end && *j.s == ',') {
                    j.s++;
                    continue;
                }
                if (j.s < j.end && *j.s == '}') j.s++;
                else fail(&j, "a bad object");
                break;
            }
        ws(&j);
        if (!j.err && j.s != j.end) fail(&j, "text after the object");
    }
    if (!j.err && !r->has_id) fail(&j, "no id");
    if (j.err) {
        snprintf(err, errn, "%s", j.err);
        return -1;
    }
    return 0;
}

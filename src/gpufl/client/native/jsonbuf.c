/* jsonbuf.c — the growable byte buffer every JSON line is built in, and its slower formatters (the fast
 * ones are inline in gpufl_native.h). */
#include "gpufl_native.h"

int sb_grow(sbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

void sb_f(sbuf *b, double v, int decimals) {
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, "%.*f", decimals, v);
    /* shortest form: drop trailing zeros, keep one digit after the point */
    while (n > 2 && tmp[n - 1] == '0' && tmp[n - 2] != '.') n--;
    sb_put(b, tmp, (size_t)n);
}

void sb_json_str(sbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    SB_LIT(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_put(b, e, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    SB_LIT(b, "\"");
}

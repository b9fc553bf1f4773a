/* INCRBYFLOAT arithmetic exactly as Redis does it: parse both operands with strtold
 * (Redis's string2ld), add them in long double, and print "%.17Lf" with trailing zeros
 * removed (Redis's ld2string in LD_STR_HUMAN mode). Rust has no long double, and the
 * printed digits of Redis's replies depend on its precision (80-bit on x86-64, 128-bit on
 * aarch64), so the few lines that must match live here, in C, with the same libc calls.
 *
 * Returns the length written to `out` (> 0), or:
 *   -1 when `a` is not a valid float, -2 when `b` is not, -3 when the sum is NaN or
 *   infinite, -4 when `out` is too small. Never writes past `out_len`. */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LONG_DOUBLE_CHARS (5 * 1024)

static int string2ld(const char *s, size_t slen, long double *dp) {
    char buf[MAX_LONG_DOUBLE_CHARS];
    long double value;
    char *eptr;
    if (slen == 0 || slen >= sizeof(buf)) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';
    errno = 0;
    value = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' || (size_t)(eptr - buf) != slen ||
        (errno == ERANGE && (value == HUGE_VALL || value == -HUGE_VALL || fpclassify(value) == FP_ZERO)) ||
        errno == EINVAL || isnan(value))
        return 0;
    *dp = value;
    return 1;
}

long percore_incrbyfloat(const char *a, size_t a_len, const char *b, size_t b_len, char *out, size_t out_len) {
    long double va, vb, sum;
    int l;
    if (!string2ld(a, a_len, &va)) return -1;
    if (!string2ld(b, b_len, &vb)) return -2;
    sum = va + vb;
    if (isnan(sum) || isinf(sum)) return -3;
    l = snprintf(out, out_len, "%.17Lf", sum);
    if (l < 0 || (size_t)l + 1 > out_len) return -4;
    if (strchr(out, '.') != NULL) {
        char *p = out + l - 1;
        while (*p == '0') {
            p--;
            l--;
        }
        if (*p == '.') l--;
    }
    if (l == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        l = 1;
    }
    out[l] = '\0';
    return l;
}

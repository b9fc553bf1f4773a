/* Doubles as Redis 7.0 reads and prints them for sorted sets, with the same libc calls so
 * every accepted spelling (hex floats, "infinity", denormals) and every printed digit
 * matches: strtod for parsing, "%.17g" for replies (Redis 7.0's addReplyDouble).
 *
 * All functions take a pointer and a length (arguments are binary-safe); the text is
 * copied into a NUL-terminated buffer first, so an embedded NUL ends it as it ends a C
 * string in Redis. */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies s[..len] NUL-terminated into stack or heap memory; returns the copy (free it
 * with release when it is not `stack`). */
static char *terminated(const char *s, size_t len, char *stack, size_t stack_len) {
    char *buf = len < stack_len ? stack : malloc(len + 1);
    if (buf == NULL) return NULL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return buf;
}

/* Redis's getDoubleFromObject on a string: 1 and *out when `s` is a whole valid float
 * (no leading space, no trailing bytes, no overflow or underflow to zero, not NaN). */
int percore_string2d(const char *s, size_t len, double *out) {
    char stack[128];
    char *buf, *eptr;
    double v;
    int ok;
    if (len == 0) return 0;
    buf = terminated(s, len, stack, sizeof(stack));
    if (buf == NULL) return 0;
    errno = 0;
    v = strtod(buf, &eptr);
    ok = !(isspace((unsigned char)buf[0]) || (size_t)(eptr - buf) != len ||
           (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL || fpclassify(v) == FP_ZERO)) ||
           isnan(v));
    if (buf != stack) free(buf);
    if (ok) *out = v;
    return ok;
}

/* strtod over the whole C string: 1 and *out when it stops at the end and is not NaN (nor,
 * with `no_erange`, out of range). */
static int strtod_whole(const char *s, size_t len, double *out, int no_erange) {
    char stack[128];
    char *buf, *eptr;
    double v;
    int ok;
    buf = terminated(s, len, stack, sizeof(stack));
    if (buf == NULL) return 0;
    errno = 0;
    v = strtod(buf, &eptr);
    ok = eptr[0] == '\0' && !isnan(v) && !(no_erange && errno == ERANGE);
    if (buf != stack) free(buf);
    if (ok) *out = v;
    return ok;
}

/* zslParseRange's reading of one bound (after any '('): strtod, valid when it stops at the
 * end of the C string and is not NaN. */
int percore_range_strtod(const char *s, size_t len, double *out) {
    return strtod_whole(s, len, out, 0);
}

/* "%.17g" of a finite double into out (at least 32 bytes); returns the length. */
int percore_fmt_g17(double d, char *out, size_t out_len) {
    return snprintf(out, out_len, "%.17g", d);
}

/* SORT's reading of a weight (sort.c): strtod, valid when it stops at the end of the C
 * string, did not overflow or underflow (ERANGE) and is not NaN. Leading spaces and the
 * empty string (0) are accepted, as Redis accepts them. */
int percore_sort_strtod(const char *s, size_t len, double *out) {
    return strtod_whole(s, len, out, 1);
}

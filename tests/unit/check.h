/* A minimal test harness.  Why not a library: the same test files must also
 * build with emscripten and run under node, where Debian's check/cmocka
 * binaries cannot follow.  Each test file is one program; it prints each
 * failed check with file:line and exits non-zero if anything failed, and
 * tests/run_unit.sh adds up the counts. */
#ifndef LB_TESTS_CHECK_H
#define LB_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failed_ = 0, check_passed_ = 0;
static const char *check_current_ = "";

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (cond) {                                                                       \
            check_passed_++;                                                              \
        } else {                                                                          \
            check_failed_++;                                                              \
            fprintf(stderr, "FAIL %s:%d [%s]: %s\n", __FILE__, __LINE__, check_current_, #cond); \
        }                                                                                 \
    } while (0)

#define CHECKF(cond, ...)                                                                 \
    do {                                                                                  \
        if (cond) {                                                                       \
            check_passed_++;                                                              \
        } else {                                                                          \
            check_failed_++;                                                              \
            fprintf(stderr, "FAIL %s:%d [%s]: %s: ", __FILE__, __LINE__, check_current_, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

#define RUN(fn)                                   \
    do {                                          \
        check_current_ = #fn;                     \
        int before_ = check_failed_;              \
        fn();                                     \
        printf("%s %s\n", check_failed_ == before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

/* The path of a file under ../shared, honouring $LB_SHARED (default "../shared"). */
static inline const char *check_shared(const char *rel)
{
    static char buf[4][1024];
    static int k = 0;
    const char *root = getenv("LB_SHARED");
    if (!root || !*root)
        root = "../shared";
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

/* Ends a test program: prints the counts and returns the exit code. */
static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed_, check_failed_);
    return check_failed_ ? 1 : 0;
}

#endif

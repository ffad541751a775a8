/* A minimal test harness for the C tests: CHECK records, never aborts. */
#ifndef EV_TEST_H
#define EV_TEST_H
#include <stdio.h>

static int ev_test_failures = 0;
static int ev_test_checks = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        ++ev_test_checks;                                                        \
        if (!(cond)) {                                                           \
            ++ev_test_failures;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

static int ev_test_summary(const char* name) {
    printf("%s: %d checks, %d failed\n", name, ev_test_checks, ev_test_failures);
    return ev_test_failures == 0 ? 0 : 1;
}
#endif

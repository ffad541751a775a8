/* A minimal test harness for the C tests: CHECK records, never aborts.
 * Plus small helpers the model tests share (all static inline, so a test
 * that does not use one pays nothing). */
#ifndef EV_TEST_H
#define EV_TEST_H
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* CHECK with a printf-style explanation printed on failure. */
#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        ++ev_test_checks;                                                        \
        if (!(cond)) {                                                           \
            ++ev_test_failures;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
        }                                                                        \
    } while (0)

static int ev_test_summary(const char* name) {
    printf("%s: %d checks, %d failed\n", name, ev_test_checks, ev_test_failures);
    return ev_test_failures == 0 ? 0 : 1;
}

/* Case-insensitive substring test; NULL-safe. */
static inline bool ev_test_contains(const char* hay, const char* needle) {
    if (hay == NULL || needle == NULL) return false;
    size_t n = strlen(needle);
    for (const char* p = hay; *p; ++p) {
        size_t i = 0;
        while (i < n && p[i] && (p[i] | 0x20) == (needle[i] | 0x20)) ++i;
        if (i == n) return true;
    }
    return n == 0;
}

/* The code is `want` and the message (non-empty) names the problem: it
 * contains `needle` (case-insensitive; NULL: only non-empty). */
#define CHECK_ERR(got, want, msg, needle)                                         \
    do {                                                                          \
        int ev_got_ = (int)(got);                                                 \
        const char* ev_msg_ = (msg);                                              \
        CHECK_MSG(ev_got_ == (int)(want), "got %d, want %d (%s); message: \"%s\"", \
                  ev_got_, (int)(want), #want, ev_msg_ ? ev_msg_ : "(null)");     \
        CHECK_MSG(ev_msg_ != NULL && ev_msg_[0] != '\0', "empty error message");  \
        if ((needle) != NULL)                                                     \
            CHECK_MSG(ev_test_contains(ev_msg_, (needle)),                        \
                      "message \"%s\" does not mention \"%s\"",                   \
                      ev_msg_ ? ev_msg_ : "(null)", (const char*)(needle));       \
    } while (0)

/* Milliseconds on a monotonic clock. */
static inline double ev_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static inline void ev_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF, no
 * truncated sequence. NULL is not valid. */
static inline bool ev_utf8_valid(const char* str) {
    if (str == NULL) return false;
    const unsigned char* s = (const unsigned char*)str;
    while (*s) {
        unsigned c = *s;
        int n;
        unsigned min;
        if (c < 0x80) { ++s; continue; }
        else if (c >= 0xC2 && c <= 0xDF) { n = 1; min = 0x80; c &= 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; min = 0x800; c &= 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; min = 0x10000; c &= 0x07; }
        else return false;
        ++s;
        for (int i = 0; i < n; ++i, ++s) {
            if ((*s & 0xC0) != 0x80) return false; /* also catches the NUL */
            c = (c << 6) | (*s & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
    }
    return true;
}

/* EV_TEST_MODEL, or exit 77 (ctest: skipped) when it is not set. */
static inline const char* ev_test_model_or_skip(const char* test) {
    const char* p = getenv("EV_TEST_MODEL");
    if (p == NULL || p[0] == '\0') {
        printf("%s: EV_TEST_MODEL is not set; skipped\n", test);
        exit(77);
    }
    return p;
}

/* Progress lines, so a slow or hanging section is easy to find. */
static double ev_test_t0 = 0;
static inline void ev_section(const char* name) {
    if (ev_test_t0 == 0) ev_test_t0 = ev_now_ms();
    printf("[%7.0f ms] %s\n", ev_now_ms() - ev_test_t0, name);
    fflush(stdout);
}

#ifdef EDGE_VEDA_H
/* ---- helpers for tests with a model (include edge_veda.h first) ---- */

/* A context on `path` with n_ctx tokens (CPU, auto threads), or NULL with
 * the reason printed. */
static inline ev_context ev_test_open(const char* path, int n_ctx, bool auto_unload) {
    ev_config c;
    ev_config_default(&c);
    c.model_path = path;
    c.context_size = n_ctx;
    c.backend = EV_BACKEND_CPU;
    c.auto_unload_on_memory_pressure = auto_unload;
    /* One thread: with ggml's OpenMP thread pool, two threads on a loaded
     * 2-core machine (other builds running) are up to 10x slower than one. */
    c.num_threads = 1;
    ev_error_t err = EV_SUCCESS;
    ev_context ctx = ev_init(&c, &err);
    if (ctx == NULL) fprintf(stderr, "ev_init(%s) failed: %d %s\n", path, err, ev_last_error_message());
    return ctx;
}

/* Greedy (temperature 0, no penalties) for max_tokens tokens. */
static inline ev_generation_params ev_test_greedy(int max_tokens) {
    ev_generation_params p;
    ev_generation_params_default(&p);
    p.max_tokens = max_tokens;
    p.temperature = 0.0f;
    p.repeat_penalty = 1.0f;
    return p;
}

/* ev_generate that CHECKs success; returns the output (free with
 * ev_free_string) or NULL. */
static inline char* ev_test_generate_(ev_context ctx, const char* prompt, const ev_generation_params* p,
                                      const char* file, int line) {
    char* out = NULL;
    ev_error_t rc = ev_generate(ctx, prompt, p, &out);
    ++ev_test_checks;
    if (rc != EV_SUCCESS || out == NULL) {
        ++ev_test_failures;
        fprintf(stderr, "%s:%d: ev_generate failed: %d %s\n", file, line, rc, ev_get_last_error(ctx));
    }
    return out;
}
#define ev_test_generate(ctx, prompt, p) ev_test_generate_((ctx), (prompt), (p), __FILE__, __LINE__)

/* The model's chat template applied to one user message, assistant prefix
 * appended (free with ev_free_string). */
static inline char* ev_test_chat(ev_context ctx, const char* user) {
    ev_chat_message m = {"user", user};
    char* out = NULL;
    ev_error_t rc = ev_chat_apply_template(ctx, &m, 1, true, &out);
    ++ev_test_checks;
    if (rc != EV_SUCCESS || out == NULL) {
        ++ev_test_failures;
        fprintf(stderr, "ev_chat_apply_template failed: %d %s\n", rc, ev_get_last_error(ctx));
    }
    return out;
}

static inline ev_generation_stats ev_test_stats(ev_context ctx) {
    ev_generation_stats s;
    memset(&s, 0, sizeof s);
    ev_error_t rc = ev_get_last_generation_stats(ctx, &s);
    CHECK(rc == EV_SUCCESS);
    return s;
}
#endif /* EDGE_VEDA_H */
#endif

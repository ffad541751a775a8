/* The compute thread and the entry guard (native/src/compute_thread.cpp,
 * guard.h):
 *   - decode is as fast from any calling thread as from the first one (the
 *     core's own timings, compared between threads of this process with a
 *     generous margin: the bug it guards against made other threads 2-8x
 *     slower);
 *   - what a call leaves for its caller (the thread's last error, the
 *     thread's last stats) reaches the calling thread, though the work ran on
 *     the compute thread;
 *   - a C++ exception inside an entry (std::bad_alloc under an address-space
 *     limit, in a fork()ed child) comes back as EV_ERROR_OUT_OF_MEMORY instead
 *     of terminating the process.
 * Exit 77 without EV_TEST_MODEL. */
#define _GNU_SOURCE
#include "edge_veda.h"
#include "ev_test.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char* g_path;
static const char* kPrompt = "Once upon a time";
#if defined(__SANITIZE_THREAD__)
/* Under TSan every OpenMP barrier goes through its runtime: decode ran at
 * about 1 token/s here (one 5-round speed test > 10 min). So one short round
 * and no speed ratio (a timing expectation means nothing under TSan); the
 * hand-off from the main thread and from a new thread is still exercised. */
enum { kRounds = 1, kTokens = 8 };
#else
enum { kRounds = 5, kTokens = 48 };
#endif

static ev_context open_ctx(int threads) {
    ev_config c;
    ev_config_default(&c);
    c.model_path = g_path;
    c.context_size = 256;
    c.backend = EV_BACKEND_CPU;
    c.num_threads = threads;
    ev_error_t err;
    ev_context ctx = ev_init(&c, &err);
    CHECK_MSG(ctx != NULL, "ev_init: %s", ev_last_error_message());
    return ctx;
}

/* Decode tokens per second of one greedy generation, from the core's stats. */
static double decode_rate(ev_context ctx) {
    ev_generation_params p = ev_test_greedy(kTokens);
    char* out = ev_test_generate(ctx, kPrompt, &p);
    ev_free_string(out);
    ev_generation_stats s = ev_test_stats(ctx);
    if (s.generation_ms <= 0 || s.generated_tokens < 2) return 0;
    return 1000.0 * (s.generated_tokens - 1) / s.generation_ms;
}

typedef struct {
    ev_context ctx;
    double rate;
} rate_job;

static void* rate_in_thread(void* arg) {
    rate_job* j = arg;
    j->rate = decode_rate(j->ctx);
    return NULL;
}

static double rate_on_new_thread(ev_context ctx) {
    rate_job j = {ctx, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, rate_in_thread, &j) != 0) return 0;
    pthread_join(t, NULL);
    return j.rate;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double median(double* v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---------------------------------------------------------------------- */
static void test_speed_from_every_thread(void) {
    ev_section("decode speed: main thread vs new threads (2 compute threads)");
    ev_context ctx = open_ctx(2);
    if (!ctx) return;
    ev_set_prompt_cache(ctx, false);
    decode_rate(ctx); /* warm-up */
    double on_main[kRounds], on_new[kRounds];
    for (int r = 0; r < kRounds; ++r) {
        on_main[r] = decode_rate(ctx);
        on_new[r] = rate_on_new_thread(ctx); /* a thread that never computed before */
    }
    double m = median(on_main, kRounds), n = median(on_new, kRounds);
    printf("  decode tok/s, medians of %d: main %.1f, new threads %.1f (ratio %.2f)\n", kRounds, m, n,
           m > 0 ? n / m : 0);
    /* Generous: a loaded machine moves single runs by 20 %; the bug gave 0.13-0.6. */
#if defined(__SANITIZE_THREAD__)
    CHECK_MSG(m > 0 && n > 0, "decode on new threads %.1f tok/s vs %.1f on the main thread", n, m);
#else
    CHECK_MSG(m > 0 && n >= 0.7 * m, "decode on new threads %.1f tok/s vs %.1f on the main thread", n, m);
#endif
    ev_free(ctx);
}

/* ---------------------------------------------------------------------- */
typedef struct {
    ev_context ctx;
    ev_error_t rc;
    char msg[256];
    ev_generation_stats stats;
    int stats_rc;
} carry_job;

static void* bad_generate(void* arg) {
    carry_job* j = arg;
    ev_generation_params p = ev_test_greedy(4);
    p.top_p = 2.0f; /* invalid */
    char* out = NULL;
    j->rc = ev_generate(j->ctx, kPrompt, &p, &out);
    snprintf(j->msg, sizeof j->msg, "%s", ev_last_error_message());
    return NULL;
}

static void* good_generate(void* arg) {
    carry_job* j = arg;
    ev_generation_params p = ev_test_greedy(3);
    char* out = NULL;
    j->rc = ev_generate(j->ctx, kPrompt, &p, &out);
    ev_free_string(out);
    memset(&j->stats, 0, sizeof j->stats);
    j->stats_rc = ev_get_last_generation_stats(j->ctx, &j->stats);
    return NULL;
}

static void test_thread_state_reaches_caller(void) {
    ev_section("the caller's thread sees its own error and stats");
    ev_context ctx = open_ctx(1);
    if (!ctx) return;
    carry_job j;
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    pthread_t t;
    pthread_create(&t, NULL, bad_generate, &j);
    pthread_join(t, NULL);
    CHECK_ERR(j.rc, EV_ERROR_INVALID_PARAM, j.msg, "top_p");

    /* a success on another thread leaves this thread's last error alone */
    ev_generation_params p = ev_test_greedy(2);
    p.max_tokens = -1;
    char* out = NULL;
    CHECK(ev_generate(ctx, kPrompt, &p, &out) == EV_ERROR_INVALID_PARAM);
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    pthread_create(&t, NULL, good_generate, &j);
    pthread_join(t, NULL);
    CHECK(j.rc == EV_SUCCESS);
    CHECK(j.stats_rc == EV_SUCCESS && j.stats.generated_tokens == 3);
    CHECK_MSG(ev_test_contains(ev_last_error_message(), "max_tokens"), "main thread's error: \"%s\"",
              ev_last_error_message());
    ev_free(ctx);
}

/* ---------------------------------------------------------------------- */
/* Lower this process's address-space limit to what is mapped now plus
 * `room`; *saved gets the limit to restore. False when it cannot. */
static bool cap_address_space(size_t room, struct rlimit* saved) {
    if (getrlimit(RLIMIT_AS, saved) != 0) return false;
    FILE* f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    bool ok = f != NULL && fscanf(f, "%lu", &pages) == 1;
    if (f) fclose(f);
    if (!ok) return false;
    struct rlimit lim = {pages * (unsigned long)sysconf(_SC_PAGESIZE) + room, saved->rlim_max};
    return setrlimit(RLIMIT_AS, &lim) == 0;
}

static void test_bad_alloc_is_an_error(void) {
    ev_section("std::bad_alloc inside ev_embed (address-space limit) -> OUT_OF_MEMORY");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* Not reachable under ASan or TSan: their operator new does not throw
     * when the allocator fails (allocator_may_return_null covers malloc
     * only); it reports "allocator is out of memory" and exits the child. The
     * ggml assertion test below still throws std::bad_alloc through the guard. */
    printf("  skipped under a sanitizer (its operator new exits instead of throwing)\n");
    return;
#endif
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ev_context ctx = open_ctx(1);
        if (!ctx) _exit(3);
        ev_embed_result r;
        /* the embedding context is created now, before the limit */
        if (ev_embed(ctx, "warm up", &r) != EV_SUCCESS) _exit(7);
        ev_free_embeddings(&r);
        /* ev_embed sizes a token vector from the text's length: 64 MiB of
         * text asks for 256 MiB of tokens, beyond the limit set below */
        size_t len = (size_t)64 << 20;
        char* text = malloc(len + 1);
        if (!text) _exit(4);
        memset(text, 'a', len);
        text[len] = '\0';
        struct rlimit now;
        if (!cap_address_space((size_t)32 << 20, &now)) _exit(6);
        ev_error_t rc = ev_embed(ctx, text, &r);
        const char* msg = ev_get_last_error(ctx);
        int ok = rc == EV_ERROR_OUT_OF_MEMORY && ev_test_contains(msg, "out of memory") &&
                 ev_test_contains(ev_last_error_message(), "ev_embed");
        if (!ok) fprintf(stderr, "child: ev_embed returned %d, \"%s\"\n", rc, msg);
        /* the context still works once memory is back */
        setrlimit(RLIMIT_AS, &now);
        ev_embed_result r2;
        ok = ok && ev_embed(ctx, "hello", &r2) == EV_SUCCESS && r2.dimensions > 0;
        if (ok) ev_free_embeddings(&r2);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status), "child died of signal %d (an exception escaped the C API?)",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ggml_init's allocation assertion (GGML_ASSERT(ctx->mem_buffer != NULL))
 * used to abort the process; the abort hook turns it into std::bad_alloc,
 * llama.cpp's context constructor fails, and the call reports OUT_OF_MEMORY.
 * The embedding context is created on the first ev_embed, after the limit. */
static void test_ggml_alloc_assert_is_an_error(void) {
    ev_section("ggml allocation failure creating the embedding context -> OUT_OF_MEMORY, no abort");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        ev_context ctx = open_ctx(1);
        if (!ctx) _exit(3);
        struct rlimit now;
        if (!cap_address_space((size_t)4 << 20, &now)) _exit(6);
        ev_embed_result r;
        ev_error_t rc = ev_embed(ctx, "hello", &r);
        const char* msg = ev_get_last_error(ctx);
        int ok = rc == EV_ERROR_OUT_OF_MEMORY && ev_test_contains(msg, "out of memory");
        if (!ok) fprintf(stderr, "child: ev_embed returned %d, \"%s\"\n", rc, msg);
        setrlimit(RLIMIT_AS, &now);
        ev_generation_params p = ev_test_greedy(2);
        char* out = NULL;
        ok = ok && ev_generate(ctx, kPrompt, &p, &out) == EV_SUCCESS; /* the context still works */
        ev_free_string(out);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status), "child died of signal %d (ggml aborted?)", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ---------------------------------------------------------------------- */
/* A load-progress callback that calls a compute entry (ev_generate on another
 * context) while ev_init waits for the compute thread: the callback runs on the
 * caller's thread, and the nested call must run there too (the compute thread
 * is busy with the load, waiting for the callback). Before: a deadlock. */
static ev_context g_other;
static int g_progress_calls;
static ev_error_t g_nested_rc = EV_ERROR_UNKNOWN;

static bool progress_calls_generate(float p, void* ud) {
    (void)p;
    (void)ud;
    if (g_progress_calls++ == 0) {
        ev_generation_params gp = ev_test_greedy(2);
        char* out = NULL;
        g_nested_rc = ev_generate(g_other, kPrompt, &gp, &out);
        ev_free_string(out);
    }
    return true;
}

static void test_progress_callback_reenters(void) {
    ev_section("a load-progress callback calls ev_generate on another context");
    g_other = open_ctx(1);
    if (!g_other) return;
    ev_config c;
    ev_config_default(&c);
    c.model_path = g_path;
    c.context_size = 256;
    c.backend = EV_BACKEND_CPU;
    c.num_threads = 1;
    ev_error_t err;
    alarm(300); /* a deadlock ends as SIGALRM, not a hung ctest */
    ev_context ctx = ev_init_with_progress(&c, progress_calls_generate, NULL, &err);
    alarm(0);
    CHECK_MSG(ctx != NULL, "ev_init_with_progress: %d %s", err, ev_last_error_message());
    CHECK(g_progress_calls >= 2);
    CHECK_MSG(g_nested_rc == EV_SUCCESS, "nested ev_generate: %d", g_nested_rc);
    ev_free(ctx);
    ev_free(g_other);
}

/* Two threads pulling pieces from one stream: allowed by the header (calls
 * serialize). TSan found the stream's slot flag read unlocked after the call. */
typedef struct {
    ev_stream s;
    int pieces;
} pull_job;

static void* pull_all(void* arg) {
    pull_job* j = arg;
    ev_error_t err;
    char* piece;
    while ((piece = ev_stream_next(j->s, &err)) != NULL) {
        ++j->pieces;
        ev_free_string(piece);
    }
    return NULL;
}

static void test_two_threads_one_stream(void) {
    ev_section("two threads pull one stream");
    ev_context ctx = open_ctx(1);
    if (!ctx) return;
    ev_generation_params p = ev_test_greedy(24);
    ev_error_t err;
    ev_stream s = ev_generate_stream(ctx, kPrompt, &p, &err);
    CHECK(s != NULL);
    if (s) {
        pull_job a = {s, 0}, b = {s, 0};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, pull_all, &a);
        pthread_create(&tb, NULL, pull_all, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        CHECK_MSG(a.pieces + b.pieces > 0, "no pieces");
        ev_stream_free(s);
        /* the slot was released: a new generation may start */
        char* out = NULL;
        ev_generation_params q = ev_test_greedy(2);
        CHECK(ev_generate(ctx, kPrompt, &q, &out) == EV_SUCCESS);
        ev_free_string(out);
    }
    ev_free(ctx);
}

int main(void) {
    g_path = ev_test_model_or_skip("model_compute_thread");
    ev_set_verbose(false);
    test_thread_state_reaches_caller();
    test_bad_alloc_is_an_error();
    test_ggml_alloc_assert_is_an_error();
    test_progress_callback_reenters();
    test_two_threads_one_stream();
    test_speed_from_every_thread();
    return ev_test_summary("model_compute_thread");
}

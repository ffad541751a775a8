/* Threads: cancel of a long blocking generation and of a stream from another
 * thread; cancel during prompt processing (llama.cpp's abort callback) with
 * the context still correct afterwards; four threads generating on one
 * context at once while others read memory stats and cancel. Exit 77
 * without EV_TEST_MODEL. */
#define _GNU_SOURCE
#include "edge_veda.h"
#include "ev_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* g_path;
static const char* kCount = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"; /* greedy keeps counting */

typedef struct {
    ev_context ctx;
    const char* prompt;
    ev_generation_params p;
    ev_error_t rc;
    char* out;
    ev_generation_stats stats;
    double t_start, t_end;
} job_t;

static void* run_job(void* arg) {
    job_t* j = arg;
    j->t_start = ev_now_ms();
    j->out = NULL;
    j->rc = ev_generate(j->ctx, j->prompt, &j->p, &j->out);
    j->t_end = ev_now_ms();
    memset(&j->stats, 0, sizeof j->stats);
    ev_get_last_generation_stats(j->ctx, &j->stats); /* this thread's own call */
    return NULL;
}

static ev_context open_ctx(int n_ctx, int batch) {
    ev_config c;
    ev_config_default(&c);
    c.model_path = g_path;
    c.context_size = n_ctx;
    c.batch_size = batch;
    c.backend = EV_BACKEND_CPU;
    c.num_threads = 1;
    ev_error_t err;
    ev_context ctx = ev_init(&c, &err);
    CHECK_MSG(ctx != NULL, "ev_init: %s", ev_last_error_message());
    return ctx;
}

/* ---------------------------------------------------------------------- */
static void test_cancel_generate(ev_context ctx) {
    ev_section("cancel a long ev_generate from another thread");
    /* the prompt goes into the prompt cache first, so the long call starts
     * generating at once and the cancel lands between tokens (the cancel in
     * prompt processing is test_cancel_prompt) */
    ev_generation_params warm = ev_test_greedy(1);
    ev_free_string(ev_test_generate(ctx, kCount, &warm));
    job_t j = {ctx, kCount, ev_test_greedy(4000), 0, NULL, {0}, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, run_job, &j);
    ev_sleep_ms(600);
    double t_cancel = ev_now_ms();
    CHECK(ev_generate_cancel(ctx) == EV_SUCCESS);
    double t_returned = ev_now_ms();
    pthread_join(th, NULL);
    double latency = j.t_end - t_cancel;
    printf("  cancel call %.2f ms; generate returned %.0f ms after the cancel, %d tokens, reason %d\n",
           t_returned - t_cancel, latency, j.stats.generated_tokens, j.stats.finish_reason);
    /* lock-free: does not wait for the generation (bounds are loose: a loaded
     * or sanitized machine deschedules threads; this checks "prompt", not speed) */
    CHECK(t_returned - t_cancel < 500);
    CHECK_MSG(j.t_end > t_cancel, "the generation ended before the cancel; nothing was shown");
    CHECK(j.rc == EV_SUCCESS && j.out != NULL);
    CHECK(latency < 5000);
    CHECK(j.stats.finish_reason == EV_FINISH_CANCELLED);
    CHECK(j.stats.generated_tokens > 0 && j.stats.generated_tokens < 4000);
    CHECK(j.out && strlen(j.out) > 0 && ev_utf8_valid(j.out));
    /* what came before the cancel is the start of the uncancelled text (a slow,
     * sanitized run may get only a few tokens: compare as far as it got) */
    if (j.out) {
        const char* want = " 13, 14, 15, 16, 17, 18, 19, 20";
        size_t n = strlen(j.out) < strlen(want) ? strlen(j.out) : strlen(want);
        CHECK_MSG(n > 0 && strncmp(j.out, want, n) == 0, "cancelled output \"%s\"", j.out);
    }
    ev_free_string(j.out);

    /* the context works afterwards, and the old cancel does not leak into it */
    ev_generation_params p = ev_test_greedy(8); /* digits are single tokens: " 13, 14," */
    char* out = ev_test_generate(ctx, kCount, &p);
    CHECK_MSG(out && strncmp(out, " 13, 14", 7) == 0, "after the cancel: \"%s\"", out);
    CHECK(ev_test_stats(ctx).finish_reason == EV_FINISH_LENGTH);
    ev_free_string(out);
}

/* ---------------------------------------------------------------------- */
typedef struct {
    ev_stream s;
    int delay_ms;
    double t_cancel;
} stream_cancel_t;

static void* cancel_stream_later(void* arg) {
    stream_cancel_t* c = arg;
    ev_sleep_ms(c->delay_ms);
    c->t_cancel = ev_now_ms();
    ev_stream_cancel(c->s);
    return NULL;
}

static void test_cancel_stream(ev_context ctx) {
    ev_section("cancel a stream from another thread");
    ev_generation_params p = ev_test_greedy(4000);
    ev_error_t err;
    ev_stream s = ev_generate_stream(ctx, kCount, &p, &err);
    CHECK(s != NULL);
    if (!s) return;
    stream_cancel_t c = {s, 500, 0};
    pthread_t th;
    pthread_create(&th, NULL, cancel_stream_later, &c);
    int pieces = 0;
    char* piece;
    bool valid = true;
    while ((piece = ev_stream_next(s, &err)) != NULL) {
        valid = valid && ev_utf8_valid(piece);
        ev_free_string(piece);
        ++pieces;
    }
    double t_end = ev_now_ms();
    pthread_join(th, NULL);
    printf("  %d pieces; ended %.0f ms after the cancel, code %d\n", pieces, t_end - c.t_cancel, err);
    CHECK(valid && pieces > 0);
    CHECK(c.t_cancel > 0 && t_end - c.t_cancel < 1000);
    CHECK_ERR(err, EV_ERROR_STREAM_ENDED, ev_last_error_message(), "cancel");
    CHECK(ev_stream_next(s, &err) == NULL && err == EV_ERROR_STREAM_ENDED);
    ev_generation_stats st;
    CHECK(ev_stream_get_stats(s, &st) == EV_SUCCESS && st.finish_reason == EV_FINISH_CANCELLED);
    CHECK(st.generated_tokens < 4000);
    ev_stream_free(s);
}

/* ---------------------------------------------------------------------- */
/* ~1500 tokens of prose (not a repetition the tokenizer could collapse). */
static char* long_prompt(ev_context ctx, int want_tokens) {
    const char* words[] = {"river", "mountain", "quiet", "lantern", "harvest", "copper", "window", "garden",
                           "signal", "morning", "paper", "thunder", "orchard", "bridge", "velvet", "compass"};
    size_t cap = 64 * 1024, len = 0;
    char* s = malloc(cap);
    s[0] = '\0';
    unsigned x = 12345;
    for (;;) {
        for (int i = 0; i < 50; ++i) {
            x = x * 1103515245u + 12345u;
            const char* w = words[(x >> 16) % 16];
            len += (size_t)snprintf(s + len, cap - len, "%s%s", w, (i % 9 == 8) ? ". " : " ");
        }
        int32_t* toks = NULL;
        int n = 0;
        ev_tokenize(ctx, s, true, true, &toks, &n);
        ev_free_tokens(toks);
        if (n >= want_tokens || len + 2048 > cap) {
            printf("  prompt: %d tokens\n", n);
            return s;
        }
    }
}

/* Cancel `prompt` on ctx `delay` ms in; it must stop within a fraction of
 * one batch, and the same prompt afterwards must give `ref` again. */
/* Cancel `prompt` on ctx `delay` ms in: it must stop within `max_latency`
 * ms, having generated nothing. Returns the stats of the cancelled call. */
static ev_generation_stats cancel_prompt_once(ev_context ctx, const char* prompt, double full_ms, int delay,
                                              double max_latency) {
    ev_generation_params p = ev_test_greedy(4);
    job_t j = {ctx, prompt, p, 0, NULL, {0}, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, run_job, &j);
    ev_sleep_ms(delay);
    double t_cancel = ev_now_ms();
    ev_generate_cancel(ctx);
    pthread_join(th, NULL);
    double latency = j.t_end - t_cancel;
    printf("  cancelled at %d ms: returned %.0f ms later (the full prompt takes %.0f ms), reason %d, "
           "%d tokens, %d/%d cached\n",
           delay, latency, full_ms, j.stats.finish_reason, j.stats.generated_tokens, j.stats.cached_tokens,
           j.stats.prompt_tokens);
    CHECK(j.rc == EV_SUCCESS && j.out && j.out[0] == '\0');
    CHECK(j.stats.finish_reason == EV_FINISH_CANCELLED && j.stats.generated_tokens == 0);
    CHECK_MSG(j.t_end > t_cancel, "the prompt was done before the cancel");
    CHECK_MSG(latency < max_latency, "cancel took %.0f ms (limit %.0f)", latency, max_latency);
    ev_free_string(j.out);
    return j.stats;
}

/* The same prompt gives the reference answer: the KV cache is consistent. */
static void check_again(ev_context ctx, const char* prompt, const char* ref) {
    ev_generation_params p = ev_test_greedy(4);
    char* again = ev_test_generate(ctx, prompt, &p);
    ev_generation_stats as = ev_test_stats(ctx);
    printf("  again: %d/%d cached -> \"%s\"\n", as.cached_tokens, as.prompt_tokens, again ? again : "");
    CHECK_MSG(ref && again && strcmp(ref, again) == 0, "\"%s\" vs the reference \"%s\"", again, ref);
    CHECK(as.finish_reason == EV_FINISH_LENGTH);
    ev_free_string(again);
}

static void test_cancel_prompt(void) {
    /* batch_size 2048: the ~1500-token prompt is ONE llama_decode call (three
     * ubatches of 512 and a bit), so only llama.cpp's abort callback can stop
     * it early; a cancel checked between decode calls would wait it out */
    ev_section("cancel during prompt processing (batch_size 2048)");
    ev_context ctx = open_ctx(4096, 2048);
    if (!ctx) return;
    char* prompt = long_prompt(ctx, 1500);

    /* the reference: the whole prompt, and the greedy answer */
    ev_generation_params p = ev_test_greedy(4);
    char* ref = ev_test_generate(ctx, prompt, &p);
    ev_generation_stats rs = ev_test_stats(ctx);
    printf("  full prompt: %d tokens in %.0f ms -> \"%s\"\n", rs.prompt_tokens, rs.prompt_ms, ref ? ref : "");
    CHECK(rs.prompt_tokens >= 1400 && rs.cached_tokens == 0);
    /* well under one ubatch (a third of the prompt) */
    double max_latency = rs.prompt_ms / 3 + 200; /* loose: a bound on "interrupted", not a speed */

    /* the prompt is cached; a longer one (~370 new tokens) cancelled in its
     * new part leaves the cached part intact */
    size_t n = strlen(prompt);
    char* longer = malloc(n + 4096);
    memcpy(longer, prompt, n);
    strcpy(longer + n, " Now a question about all of that:");
    for (int k = 0; k < 60; ++k) strcat(longer, " and the lantern by the river");
    ev_generation_stats ls = cancel_prompt_once(ctx, longer, rs.prompt_ms, 20, max_latency);
    CHECK(ls.cached_tokens == rs.prompt_tokens && ls.prompt_tokens > rs.prompt_tokens + 300);
    check_again(ctx, prompt, ref);
    CHECK(ev_test_stats(ctx).cached_tokens == rs.prompt_tokens - 1);
    free(longer);

    /* from a cold cache: 20 ms in is inside the first ubatch */
    CHECK(ev_reset(ctx) == EV_SUCCESS);
    ev_generation_stats cs = cancel_prompt_once(ctx, prompt, rs.prompt_ms, 20, max_latency);
    CHECK(cs.cached_tokens == 0);

    /* 60 % in: llama.cpp keeps the ubatches it finished; the next call with
     * the same prompt resumes from them and answers as the reference did */
    CHECK(ev_reset(ctx) == EV_SUCCESS);
    cancel_prompt_once(ctx, prompt, rs.prompt_ms, (int)(rs.prompt_ms * 0.6), max_latency);
    check_again(ctx, prompt, ref);
    int resumed = ev_test_stats(ctx).cached_tokens;
    CHECK_MSG(resumed >= 512 && resumed % 512 == 0, "resumed from %d tokens, want whole ubatches", resumed);

    /* and a short chat prompt works */
    char* chat = ev_test_chat(ctx, "What is the capital of France?");
    p.max_tokens = 16;
    char* paris = chat ? ev_test_generate(ctx, chat, &p) : NULL;
    CHECK(paris && strstr(paris, "Paris"));
    ev_free_string(paris);
    ev_free_string(chat);
    ev_free(ctx);
    ev_free_string(ref);
    free(prompt);
}

/* ---------------------------------------------------------------------- */
typedef struct {
    ev_context ctx;
    atomic_bool stop;
    bool cancel; /* also call ev_generate_cancel every 150 ms */
    int reads, bad;
    double max_ms;
    int cancels;
} watcher_t;

static void* watch(void* arg) {
    watcher_t* w = arg;
    double last_cancel = ev_now_ms();
    while (!atomic_load(&w->stop)) {
        ev_memory_stats ms;
        double t = ev_now_ms();
        ev_error_t rc = ev_get_memory_usage(w->ctx, &ms);
        bool valid = ev_is_valid(w->ctx);
        double dt = ev_now_ms() - t;
        if (dt > w->max_ms) w->max_ms = dt;
        ++w->reads;
        if (rc != EV_SUCCESS || !valid || ms.current_bytes == 0 ||
            ms.current_bytes != ms.model_bytes + ms.context_bytes || ms.peak_bytes < ms.current_bytes) {
            ++w->bad;
        }
        if (w->cancel && ev_now_ms() - last_cancel > 150) {
            ev_generate_cancel(w->ctx);
            ++w->cancels;
            last_cancel = ev_now_ms();
        }
        ev_sleep_ms(2);
    }
    return NULL;
}

static void test_concurrent(ev_context ctx) {
    ev_section("4 threads on one context + a memory reader");
    const char* asks[4] = {"What is the capital of France?", "Name a primary color.", "What is 2 + 2?",
                           "Say hello in Spanish."};
    char* prompts[4];
    char* ref[4];
    int ref_prompt_tokens[4];
    ev_generation_params p = ev_test_greedy(12);
    for (int i = 0; i < 4; ++i) {
        prompts[i] = ev_test_chat(ctx, asks[i]);
        ev_reset(ctx); /* a cold cache, so the reference does not depend on order */
        ref[i] = prompts[i] ? ev_test_generate(ctx, prompts[i], &p) : NULL;
        ref_prompt_tokens[i] = ev_test_stats(ctx).prompt_tokens;
    }
    /* the cache-dependent numerics must not matter for greedy either: run with
     * the cache off so every call starts cold, as the reference did */
    ev_set_prompt_cache(ctx, false);

    watcher_t w = {ctx, false, false, 0, 0, 0, 0};
    pthread_t wt, th[4];
    job_t jobs[4];
    pthread_create(&wt, NULL, watch, &w);
    double t0 = ev_now_ms();
    for (int i = 0; i < 4; ++i) {
        jobs[i] = (job_t){ctx, prompts[i], p, 0, NULL, {0}, 0, 0};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < 4; ++i) pthread_join(th[i], NULL);
    atomic_store(&w.stop, true);
    pthread_join(wt, NULL);
    printf("  4 generations in %.0f ms; %d memory reads (slowest %.2f ms), %d inconsistent\n", ev_now_ms() - t0,
           w.reads, w.max_ms, w.bad);
    for (int i = 0; i < 4; ++i) {
        CHECK_MSG(jobs[i].rc == EV_SUCCESS, "thread %d: %d", i, jobs[i].rc);
        CHECK(jobs[i].out && ev_utf8_valid(jobs[i].out) && strlen(jobs[i].out) > 0);
        CHECK_MSG(ref[i] && jobs[i].out && strcmp(ref[i], jobs[i].out) == 0, "thread %d: \"%s\" vs \"%s\"", i,
                  jobs[i].out, ref[i]);
        /* each thread reads the stats of its own call */
        CHECK(jobs[i].stats.prompt_tokens == ref_prompt_tokens[i]);
    }
    /* calls serialize: no two generations overlap in time (each holds the
     * context lock from prompt to last token), checked from the stats' own
     * durations: the sum of busy times fits in the wall time */
    double busy = 0, first = 1e300, last = 0;
    for (int i = 0; i < 4; ++i) {
        busy += jobs[i].stats.prompt_ms + jobs[i].stats.generation_ms;
        if (jobs[i].t_start < first) first = jobs[i].t_start;
        if (jobs[i].t_end > last) last = jobs[i].t_end;
    }
    CHECK_MSG(busy <= (last - first) + 5, "busy %.0f ms > wall %.0f ms: generations overlapped", busy, last - first);
    CHECK(w.reads > 10 && w.bad == 0);
    CHECK_MSG(w.max_ms < 100, "ev_get_memory_usage took %.1f ms while generations ran", w.max_ms);
    for (int i = 0; i < 4; ++i) ev_free_string(jobs[i].out);
    ev_set_prompt_cache(ctx, true);

    ev_section("4 threads + a thread cancelling every 150 ms");
    ev_generation_params warm = ev_test_greedy(1);
    ev_free_string(ev_test_generate(ctx, kCount, &warm)); /* cached: they start generating at once */
    w = (watcher_t){ctx, false, true, 0, 0, 0, 0};
    pthread_create(&wt, NULL, watch, &w);
    t0 = ev_now_ms();
    for (int i = 0; i < 4; ++i) {
        jobs[i] = (job_t){ctx, kCount, ev_test_greedy(2000), 0, NULL, {0}, 0, 0};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < 4; ++i) pthread_join(th[i], NULL);
    atomic_store(&w.stop, true);
    pthread_join(wt, NULL);
    double total = ev_now_ms() - t0;
    printf("  done in %.0f ms, %d cancels; tokens:", total, w.cancels);
    for (int i = 0; i < 4; ++i) printf(" %d", jobs[i].stats.generated_tokens);
    printf("\n");
    for (int i = 0; i < 4; ++i) {
        CHECK(jobs[i].rc == EV_SUCCESS && jobs[i].out && ev_utf8_valid(jobs[i].out));
        CHECK(jobs[i].stats.finish_reason == EV_FINISH_CANCELLED);
        CHECK(jobs[i].stats.generated_tokens < 2000);
        ev_free_string(jobs[i].out);
    }
    CHECK(total < 15000);
    CHECK(w.bad == 0);

    for (int i = 0; i < 4; ++i) {
        ev_free_string(ref[i]);
        ev_free_string(prompts[i]);
    }
}

int main(void) {
    g_path = ev_test_model_or_skip("model_threads");
    ev_set_verbose(false);
    double t0 = ev_now_ms();
    ev_context ctx = open_ctx(4096, 512);
    if (!ctx) return ev_test_summary("model_threads");
    test_cancel_generate(ctx);
    test_cancel_stream(ctx);
    ev_free(ctx);
    test_cancel_prompt();
    ctx = open_ctx(512, 512);
    if (ctx) {
        test_concurrent(ctx);
        ev_free(ctx);
    }
    printf("model_threads: %.1f s\n", (ev_now_ms() - t0) / 1000.0);
    return ev_test_summary("model_threads");
}

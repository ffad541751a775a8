/* A stream's failures are its context's too: after ev_stream_next (and the
 * other stream calls that return a code) fails, ev_get_last_error(ctx) has
 * the same message as ev_last_error_message(), as for the calls that take
 * the context. A stream handle that is not usable (NULL) has no context: its
 * message is the thread's only. Exit 77 without EV_TEST_MODEL. */
#include "edge_veda.h"
#include "ev_test.h"

#include <stdio.h>
#include <string.h>

static const char* g_path;

/* The call's message, on the thread and on the context. */
static void expect_both(ev_context ctx, ev_error_t got, ev_error_t want, const char* needle) {
    CHECK_ERR(got, want, ev_last_error_message(), needle);
    CHECK_ERR(got, want, ev_get_last_error(ctx), needle);
    CHECK_MSG(strcmp(ev_get_last_error(ctx), ev_last_error_message()) == 0, "context \"%s\", thread \"%s\"",
              ev_get_last_error(ctx), ev_last_error_message());
}

/* Something else on the context's error, so a stale message cannot pass. */
static void clobber(ev_context ctx) {
    CHECK(ev_reset(NULL) == EV_ERROR_CONTEXT_INVALID); /* the thread's only */
    char* out = NULL;
    CHECK(ev_detokenize(ctx, NULL, -1, false, &out) == EV_ERROR_INVALID_PARAM);
    CHECK(ev_test_contains(ev_get_last_error(ctx), "ev_detokenize"));
}

static void test_stream_next(ev_context ctx) {
    ev_section("ev_stream_next: ended, cancelled");
    ev_generation_params p = ev_test_greedy(2);
    ev_error_t err = EV_SUCCESS;
    ev_stream s = ev_generate_stream(ctx, "Hello", &p, &err);
    CHECK_MSG(s != NULL, "%d %s", err, ev_last_error_message());
    if (s == NULL) return;
    char* piece;
    while ((piece = ev_stream_next(s, &err)) != NULL) ev_free_string(piece);
    CHECK(err == EV_SUCCESS);
    clobber(ctx);
    CHECK(ev_stream_next(s, &err) == NULL);
    printf("  after the end: %d \"%s\"\n", err, ev_get_last_error(ctx));
    expect_both(ctx, err, EV_ERROR_STREAM_ENDED, "ended");
    ev_stream_free(s);

    s = ev_generate_stream(ctx, "Hello", &p, &err);
    CHECK(s != NULL);
    if (s == NULL) return;
    ev_stream_cancel(s);
    clobber(ctx);
    CHECK(ev_stream_next(s, &err) == NULL);
    printf("  after a cancel: %d \"%s\"\n", err, ev_get_last_error(ctx));
    expect_both(ctx, err, EV_ERROR_STREAM_ENDED, "cancelled");

    ev_section("ev_stream_get_stats, ev_stream_get_token_info: NULL out-parameter");
    clobber(ctx);
    expect_both(ctx, ev_stream_get_stats(s, NULL), EV_ERROR_INVALID_PARAM, "stats is NULL");
    clobber(ctx);
    expect_both(ctx, ev_stream_get_token_info(s, NULL), EV_ERROR_INVALID_PARAM, "info is NULL");
    ev_stream_free(s);

    ev_section("a NULL stream: the thread's error only");
    clobber(ctx);
    CHECK(ev_stream_next(NULL, &err) == NULL);
    CHECK_ERR(err, EV_ERROR_INVALID_PARAM, ev_last_error_message(), "stream");
    CHECK(ev_test_contains(ev_get_last_error(ctx), "ev_detokenize")); /* untouched */
}

int main(void) {
    g_path = ev_test_model_or_skip("model_stream_errors");
    ev_set_verbose(false);
    ev_context ctx = ev_test_open(g_path, 256, false);
    if (ctx == NULL) return ev_test_summary("model_stream_errors");
    test_stream_next(ctx);
    ev_free(ctx);
    return ev_test_summary("model_stream_errors");
}

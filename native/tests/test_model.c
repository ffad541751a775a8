/* Generation on a real model (EV_TEST_MODEL, e.g. SmolLM2-135M-Instruct):
 * text, greedy answers, seeds, stop sequences, UTF-8 streaming, the prompt
 * cache and ev_reset, embeddings, model info, token confidence, grammar, bad
 * generation parameters, streams (one per context, cancel, free after
 * ev_free). Exit 77 (skipped) without EV_TEST_MODEL. */
#define _GNU_SOURCE
#include "edge_veda.h"
#include "ev_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* g_path;

/* ---------------------------------------------------------------------- */
static void test_model_info(ev_context ctx) {
    ev_section("model info");
    ev_model_info mi;
    memset(&mi, 0xAB, sizeof mi);
    CHECK(ev_get_model_info(ctx, &mi) == EV_SUCCESS);
    printf("  name=%s arch=%s params=%llu ctx=%d embd=%d layers=%d\n", mi.name, mi.architecture,
           (unsigned long long)mi.num_parameters, mi.context_length, mi.embedding_dim, mi.num_layers);
    CHECK(mi.name != NULL && mi.name[0] != '\0');
    CHECK(mi.architecture != NULL && strcmp(mi.architecture, "llama") == 0);
    CHECK(mi.num_parameters > 100000000ULL && mi.num_parameters < 200000000ULL); /* 135M */
    CHECK(mi.context_length == 512);                                             /* what we asked for */
    CHECK(mi.embedding_dim == 576);
    CHECK(mi.num_layers == 30);
    CHECK(mi.reserved == NULL);
    CHECK_ERR(ev_get_model_info(ctx, NULL), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "info");
}

/* ---------------------------------------------------------------------- */
static void test_generate_text(ev_context ctx) {
    ev_section("generation produces text; max_tokens 0");
    ev_generation_params p = ev_test_greedy(12);
    char* out = ev_test_generate(ctx, "The capital of Germany is", &p);
    printf("  -> \"%s\"\n", out ? out : "");
    CHECK(out != NULL && strlen(out) > 0 && ev_utf8_valid(out));
    ev_generation_stats s = ev_test_stats(ctx);
    CHECK(s.prompt_tokens > 0 && s.generated_tokens > 0 && s.generated_tokens <= 12);
    CHECK(s.finish_reason == EV_FINISH_LENGTH || s.finish_reason == EV_FINISH_STOP);
    CHECK(s.prompt_ms > 0 && s.first_token_ms > 0);
    ev_free_string(out);

    p.max_tokens = 0; /* process the prompt only */
    out = ev_test_generate(ctx, "Hello there", &p);
    CHECK(out != NULL && out[0] == '\0');
    s = ev_test_stats(ctx);
    CHECK(s.generated_tokens == 0 && s.prompt_tokens > 0 && s.finish_reason == EV_FINISH_LENGTH);
    ev_free_string(out);

}

/* ---------------------------------------------------------------------- */
static void test_paris(ev_context ctx) {
    ev_section("chat template + greedy: the capital of France");
    char* prompt = ev_test_chat(ctx, "What is the capital of France?");
    CHECK(prompt != NULL);
    if (!prompt) return;
    /* SmolLM2's own template (ChatML style), with the assistant prefix */
    CHECK(strstr(prompt, "<|im_start|>user\nWhat is the capital of France?<|im_end|>") != NULL);
    size_t n = strlen(prompt);
    const char* tail = "<|im_start|>assistant\n";
    CHECK(n > strlen(tail) && strcmp(prompt + n - strlen(tail), tail) == 0);

    ev_generation_params p = ev_test_greedy(32);
    char* out = ev_test_generate(ctx, prompt, &p);
    printf("  -> \"%s\"\n", out ? out : "");
    CHECK_MSG(out && strstr(out, "Paris") != NULL, "no Paris in \"%s\"", out ? out : "");
    /* special tokens were parsed: the template's markers are not echoed */
    CHECK(out && strstr(out, "<|im_start|>") == NULL);
    /* greedy is deterministic */
    char* again = ev_test_generate(ctx, prompt, &p);
    CHECK(out && again && strcmp(out, again) == 0);
    ev_free_string(again);
    ev_free_string(out);
    ev_free_string(prompt);

    /* bad template input */
    ev_chat_message bad[2] = {{"user", "hi"}, {NULL, "x"}};
    char* o = (char*)1;
    CHECK_ERR(ev_chat_apply_template(ctx, bad, 2, true, &o), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx),
              "message 1");
    CHECK(o == NULL);
    CHECK_ERR(ev_chat_apply_template(ctx, bad, 1, true, NULL), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx),
              NULL);
}

/* ---------------------------------------------------------------------- */
static char* sample_with_seed(ev_context ctx, const char* prompt, int64_t seed) {
    ev_generation_params p;
    ev_generation_params_default(&p);
    p.max_tokens = 24;
    p.temperature = 1.0f;
    ev_generation_extras x;
    ev_generation_extras_default(&x);
    x.seed = seed;
    p.reserved = &x;
    return ev_test_generate(ctx, prompt, &p);
}

static void test_seeds(ev_context ctx) {
    ev_section("seeds: same seed same text, different seeds differ (temperature 1)");
    char* prompt = ev_test_chat(ctx, "Write a short poem about the sea.");
    if (!prompt) return;
    char* a = sample_with_seed(ctx, prompt, 42);
    char* b = sample_with_seed(ctx, prompt, 42);
    char* c = sample_with_seed(ctx, prompt, 43);
    char* d = sample_with_seed(ctx, prompt, 44);
    ev_reset(ctx); /* and with an empty prompt cache */
    char* e = sample_with_seed(ctx, prompt, 42);
    printf("  42: \"%s\"\n  43: \"%s\"\n", a ? a : "", c ? c : "");
    CHECK_MSG(a && b && strcmp(a, b) == 0, "seed 42 twice: \"%s\" vs \"%s\"", a, b);
    CHECK_MSG(a && e && strcmp(a, e) == 0, "seed 42 after reset: \"%s\" vs \"%s\"", a, e);
    CHECK_MSG(a && c && strcmp(a, c) != 0, "seeds 42 and 43 gave the same text");
    CHECK_MSG(a && d && strcmp(a, d) != 0, "seeds 42 and 44 gave the same text");
    ev_free_string(a);
    ev_free_string(b);
    ev_free_string(c);
    ev_free_string(d);
    ev_free_string(e);

    /* config.seed is honoured when the request does not set one */
    ev_config cfg;
    ev_config_default(&cfg);
    cfg.model_path = g_path;
    cfg.context_size = 256;
    cfg.backend = EV_BACKEND_CPU;
    cfg.seed = 1234;
    cfg.num_threads = 1;
    ev_error_t err;
    ev_context c2 = ev_init(&cfg, &err);
    CHECK(c2 != NULL);
    if (c2) {
        ev_generation_params p;
        ev_generation_params_default(&p);
        p.max_tokens = 24;
        p.temperature = 1.0f;
        char* x1 = ev_test_generate(c2, prompt, &p);
        char* x2 = ev_test_generate(c2, prompt, &p);
        char* x3 = sample_with_seed(c2, prompt, 1234); /* same seed given per request */
        char* x4 = sample_with_seed(c2, prompt, -2);   /* -2 = the config's */
        CHECK_MSG(x1 && x2 && strcmp(x1, x2) == 0, "config seed: \"%s\" vs \"%s\"", x1, x2);
        CHECK(x1 && x3 && strcmp(x1, x3) == 0);
        CHECK(x1 && x4 && strcmp(x1, x4) == 0);
        /* seed -1: random per request */
        char* r[3];
        for (int i = 0; i < 3; ++i) r[i] = sample_with_seed(c2, prompt, -1);
        CHECK_MSG(r[0] && r[1] && r[2] && !(strcmp(r[0], r[1]) == 0 && strcmp(r[1], r[2]) == 0),
                  "seed -1 gave the same text three times");
        for (int i = 0; i < 3; ++i) ev_free_string(r[i]);
        ev_free_string(x1);
        ev_free_string(x2);
        ev_free_string(x3);
        ev_free_string(x4);
        ev_free(c2);
    }
    ev_free_string(prompt);

    /* bad extras */
    ev_generation_params p = ev_test_greedy(4);
    ev_generation_extras x;
    ev_generation_extras_default(&x);
    x.struct_size = 3;
    p.reserved = &x;
    char* out = (char*)1;
    CHECK_ERR(ev_generate(ctx, "hi", &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "reserved");
    CHECK(out == NULL);
    ev_generation_extras_default(&x);
    x.min_p = 2.0f;
    CHECK_ERR(ev_generate(ctx, "hi", &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "min_p");
}

/* ---------------------------------------------------------------------- */
/* Drain a stream: pieces (each CHECKed non-empty, valid UTF-8) into *pieces
 * (if not NULL), returns the concatenation (malloc'd). */
#define MAX_PIECES 512
static char* drain(ev_stream s, char** pieces, int* n_pieces, ev_error_t* end_code) {
    size_t cap = 256, len = 0;
    char* all = malloc(cap);
    all[0] = '\0';
    int n = 0;
    ev_error_t err = EV_SUCCESS;
    for (;;) {
        char* piece = ev_stream_next(s, &err);
        if (piece == NULL) break;
        CHECK_MSG(piece[0] != '\0', "empty piece");
        CHECK_MSG(ev_utf8_valid(piece), "piece %d is not valid UTF-8", n);
        size_t pl = strlen(piece);
        while (len + pl + 1 > cap) all = realloc(all, cap *= 2);
        memcpy(all + len, piece, pl + 1);
        len += pl;
        if (pieces && n < MAX_PIECES) pieces[n] = piece;
        else ev_free_string(piece);
        ++n;
    }
    if (n_pieces) *n_pieces = n < MAX_PIECES ? n : MAX_PIECES;
    if (end_code) *end_code = err;
    return all;
}

static void test_stop_sequences(ev_context ctx) {
    ev_section("stop sequences across token boundaries, never emitted");
    char* prompt = ev_test_chat(ctx, "Tell me about the Eiffel Tower.");
    if (!prompt) return;
    ev_generation_params p = ev_test_greedy(40);

    /* the greedy output, piece by piece (without stops one piece = one token,
     * unless a UTF-8 character is split across tokens) */
    ev_error_t err;
    ev_stream s = ev_generate_stream(ctx, prompt, &p, &err);
    CHECK(s != NULL && err == EV_SUCCESS);
    if (!s) return;
    char* pieces[MAX_PIECES];
    int np = 0;
    ev_error_t end;
    char* full = drain(s, pieces, &np, &end);
    ev_stream_free(s);
    CHECK(end == EV_SUCCESS);
    printf("  greedy (%d pieces): \"%s\"\n", np, full);

    /* a stop string made of the last 2 bytes of one piece and the first 2 of
     * the next, that occurs first exactly there */
    char stop[8] = "";
    size_t stop_at = 0, off = strlen(pieces[0]);
    for (int i = 1; i < np && !stop[0]; ++i) {
        size_t l0 = strlen(pieces[i - 1]), l1 = strlen(pieces[i]);
        if (i >= 3 && l0 >= 2 && l1 >= 2) {
            char cand[8];
            snprintf(cand, sizeof cand, "%c%c%c%c", pieces[i - 1][l0 - 2], pieces[i - 1][l0 - 1], pieces[i][0],
                     pieces[i][1]);
            bool ascii = true;
            for (int k = 0; k < 4; ++k) ascii = ascii && (unsigned char)cand[k] < 0x80;
            const char* first = strstr(full, cand);
            if (ascii && first && (size_t)(first - full) == off - 2) {
                memcpy(stop, cand, sizeof cand);
                stop_at = off - 2;
            }
        }
        off += l1;
    }
    CHECK_MSG(stop[0] != '\0', "no stop string spanning two tokens found in \"%s\"", full);
    if (stop[0]) {
        printf("  stop \"%s\" spans pieces; expect the first %zu bytes\n", stop, stop_at);
        const char* stops[2] = {"NEVER-IN-THE-OUTPUT", stop};
        p.stop_sequences = stops;
        p.num_stop_sequences = 2;
        char* out = ev_test_generate(ctx, prompt, &p);
        printf("  -> \"%s\"\n", out ? out : "");
        CHECK(out && strstr(out, stop) == NULL);
        CHECK_MSG(out && strlen(out) == stop_at && strncmp(out, full, stop_at) == 0,
                  "with stop: \"%s\", want the prefix \"%.*s\"", out, (int)stop_at, full);
        ev_generation_stats st = ev_test_stats(ctx);
        CHECK(st.finish_reason == EV_FINISH_STOP);
        ev_free_string(out);

        /* the same through a stream: no piece carries any of the stop */
        s = ev_generate_stream(ctx, prompt, &p, &err);
        CHECK(s != NULL);
        if (s) {
            char* sp[MAX_PIECES];
            int n2 = 0;
            char* cat = drain(s, sp, &n2, &end);
            CHECK(end == EV_SUCCESS);
            CHECK_MSG(strlen(cat) == stop_at && strncmp(cat, full, stop_at) == 0, "stream with stop: \"%s\"", cat);
            for (int i = 0; i < n2; ++i) ev_free_string(sp[i]);
            ev_generation_stats ss;
            CHECK(ev_stream_get_stats(s, &ss) == EV_SUCCESS && ss.finish_reason == EV_FINISH_STOP);
            free(cat);
            ev_stream_free(s);
        }

        /* a stop at the very start: nothing is emitted */
        char head[4] = {full[0], full[1], full[2], 0};
        const char* stops2[1] = {head};
        p.stop_sequences = stops2;
        p.num_stop_sequences = 1;
        out = ev_test_generate(ctx, prompt, &p);
        CHECK(out && out[0] == '\0');
        ev_free_string(out);
    }
    for (int i = 0; i < np; ++i) ev_free_string(pieces[i]);
    free(full);

    /* bad stop arrays */
    const char* with_null[3] = {"a", NULL, "b"};
    p.stop_sequences = with_null;
    p.num_stop_sequences = 3;
    char* out = (char*)1;
    CHECK_ERR(ev_generate(ctx, prompt, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx),
              "stop_sequences[1]");
    CHECK(out == NULL);
    CHECK(ev_generate_stream(ctx, prompt, &p, &err) == NULL);
    CHECK_ERR(err, EV_ERROR_INVALID_PARAM, ev_last_error_message(), "stop_sequences[1]");
    p.stop_sequences = NULL;
    p.num_stop_sequences = 1;
    CHECK_ERR(ev_generate(ctx, prompt, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "stop_sequences");
    p.num_stop_sequences = -1;
    CHECK_ERR(ev_generate(ctx, prompt, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx),
              "num_stop_sequences");
    ev_free_string(prompt);
}

/* ---------------------------------------------------------------------- */
static void test_utf8_stream(ev_context ctx) {
    ev_section("UTF-8: every streamed piece is whole characters; pieces == ev_generate");
    const char* asks[] = {
        "Write the French word for coffee with its accent, the Japanese word for thank you in hiragana, "
        "and three emoji.",
        "Translate 'good morning' into Chinese, Japanese, Korean, Russian and Greek.",
    };
    int multibyte_total = 0;
    for (size_t k = 0; k < sizeof asks / sizeof *asks; ++k) {
        char* prompt = ev_test_chat(ctx, asks[k]);
        if (!prompt) continue;
        ev_generation_params p = ev_test_greedy(60);
        char* blocking = ev_test_generate(ctx, prompt, &p);
        ev_error_t err;
        ev_stream s = ev_generate_stream(ctx, prompt, &p, &err);
        CHECK(s != NULL);
        if (s && blocking) {
            char* pieces[MAX_PIECES];
            int np = 0;
            ev_error_t end;
            char* cat = drain(s, pieces, &np, &end);
            CHECK(end == EV_SUCCESS);
            printf("  -> (%d pieces) \"%s\"\n", np, cat);
            CHECK(ev_utf8_valid(blocking));
            CHECK_MSG(strcmp(cat, blocking) == 0, "stream \"%s\" != generate \"%s\"", cat, blocking);
            for (const unsigned char* q = (const unsigned char*)cat; *q; ++q) multibyte_total += (*q >= 0xC0);
            for (int i = 0; i < np; ++i) ev_free_string(pieces[i]);
            free(cat);
        }
        ev_stream_free(s);
        ev_free_string(blocking);
        ev_free_string(prompt);
    }
    printf("  %d multi-byte characters seen\n", multibyte_total);
    CHECK_MSG(multibyte_total >= 3, "the model produced no multi-byte text; the test proves little");

    /* max_tokens cuts in the middle of characters: pieces stay whole */
    char* prompt = ev_test_chat(ctx, "Reply only with ten different emoji.");
    for (int mt = 1; prompt && mt <= 8; ++mt) {
        ev_generation_params p = ev_test_greedy(mt);
        char* blocking = ev_test_generate(ctx, prompt, &p);
        CHECK(ev_utf8_valid(blocking));
        ev_error_t err;
        ev_stream s = ev_generate_stream(ctx, prompt, &p, &err);
        if (s) {
            char* cat = drain(s, NULL, NULL, NULL);
            CHECK(blocking && strcmp(cat, blocking) == 0);
            free(cat);
            ev_stream_free(s);
        }
        ev_free_string(blocking);
    }
    ev_free_string(prompt);
}

/* ---------------------------------------------------------------------- */
static void test_prompt_cache_reset(ev_context ctx) {
    ev_section("prompt cache and ev_reset");
    char* prompt = ev_test_chat(ctx, "Name three colors.");
    if (!prompt) return;
    ev_generation_params p = ev_test_greedy(8);
    CHECK(ev_reset(ctx) == EV_SUCCESS);
    char* o1 = ev_test_generate(ctx, prompt, &p);
    ev_generation_stats s1 = ev_test_stats(ctx);
    char* o2 = ev_test_generate(ctx, prompt, &p);
    ev_generation_stats s2 = ev_test_stats(ctx);
    printf("  first: %d/%d cached, second: %d/%d cached\n", s1.cached_tokens, s1.prompt_tokens, s2.cached_tokens,
           s2.prompt_tokens);
    CHECK(s1.cached_tokens == 0);
    CHECK(s2.cached_tokens > 0 && s2.cached_tokens == s2.prompt_tokens - 1);
    CHECK(o1 && o2 && strcmp(o1, o2) == 0);

    /* the next chat turn extends the previous prompt + answer: only new tokens run */
    if (o2) {
        size_t n = strlen(prompt) + strlen(o2) + 256;
        char* turn2 = malloc(n);
        snprintf(turn2, n, "%s%s<|im_end|>\n<|im_start|>user\nAnd two more?<|im_end|>\n<|im_start|>assistant\n",
                 prompt, o2);
        char* o3 = ev_test_generate(ctx, turn2, &p);
        ev_generation_stats s3 = ev_test_stats(ctx);
        printf("  next turn: %d/%d cached\n", s3.cached_tokens, s3.prompt_tokens);
        CHECK(s3.cached_tokens >= s2.prompt_tokens);
        ev_free_string(o3);
        free(turn2);
    }

    CHECK(ev_reset(ctx) == EV_SUCCESS);
    char* o4 = ev_test_generate(ctx, prompt, &p);
    ev_generation_stats s4 = ev_test_stats(ctx);
    CHECK(s4.cached_tokens == 0);
    CHECK(o1 && o4 && strcmp(o1, o4) == 0); /* same answer from a cold cache */

    /* with the cache off every call starts cold */
    CHECK(ev_set_prompt_cache(ctx, false) == EV_SUCCESS);
    char* o5 = ev_test_generate(ctx, prompt, &p);
    CHECK(ev_test_stats(ctx).cached_tokens == 0);
    CHECK(o1 && o5 && strcmp(o1, o5) == 0);
    CHECK(ev_set_prompt_cache(ctx, true) == EV_SUCCESS);
    /* ev_memory_cleanup drops the cache too */
    ev_free_string(ev_test_generate(ctx, prompt, &p));
    CHECK(ev_memory_cleanup(ctx) == EV_SUCCESS);
    ev_free_string(ev_test_generate(ctx, prompt, &p));
    CHECK(ev_test_stats(ctx).cached_tokens == 0);
    ev_free_string(o1);
    ev_free_string(o2);
    ev_free_string(o4);
    ev_free_string(o5);
    ev_free_string(prompt);
}

/* ---------------------------------------------------------------------- */
static double l2(const float* v, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += (double)v[i] * v[i];
    return sqrt(s);
}

static void test_embed(ev_context ctx) {
    ev_section("embeddings");
    ev_embed_result a, b, c;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    CHECK(ev_embed(ctx, "The cat sat on the mat.", &a) == EV_SUCCESS);
    CHECK(ev_embed(ctx, "The cat sat on the mat.", &b) == EV_SUCCESS);
    CHECK(ev_embed(ctx, "Quarterly revenue grew by eight percent.", &c) == EV_SUCCESS);
    CHECK(a.dimensions == 576 && b.dimensions == 576 && c.dimensions == 576);
    CHECK(a.token_count > 3 && a.token_count < 20);
    if (a.embeddings && b.embeddings && c.embeddings) {
        double na = l2(a.embeddings, a.dimensions);
        printf("  dims=%d tokens=%d |v|=%.6f\n", a.dimensions, a.token_count, na);
        CHECK(fabs(na - 1.0) < 1e-4);
        CHECK(fabs(l2(c.embeddings, c.dimensions) - 1.0) < 1e-4);
        CHECK(memcmp(a.embeddings, b.embeddings, sizeof(float) * a.dimensions) == 0); /* deterministic */
        double dot = 0;
        bool finite_all = true;
        for (int i = 0; i < a.dimensions; ++i) {
            dot += (double)a.embeddings[i] * c.embeddings[i];
            finite_all = finite_all && isfinite(a.embeddings[i]);
        }
        CHECK(finite_all);
        printf("  cos(cat, revenue)=%.4f\n", dot);
        CHECK(dot < 0.9999);
    }
    ev_free_embeddings(&a);
    CHECK(a.embeddings == NULL && a.dimensions == 0);
    ev_free_embeddings(&b);
    ev_free_embeddings(&c);
    /* generation still works beside the embedding context */
    ev_generation_params p = ev_test_greedy(4);
    ev_free_string(ev_test_generate(ctx, "Hello", &p));

    CHECK_ERR(ev_embed(ctx, "", &a), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "empty");
    CHECK_ERR(ev_embed(ctx, NULL, &a), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "NULL");
    CHECK_ERR(ev_embed(ctx, "x", NULL), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "NULL");
    /* longer than the embedding context */
    size_t n = 40000;
    char* big = malloc(n + 1);
    for (size_t i = 0; i < n; i += 4) memcpy(big + i, "cat ", 4);
    big[n] = '\0';
    CHECK_ERR(ev_embed(ctx, big, &a), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "tokens");
    free(big);
}

/* ---------------------------------------------------------------------- */
static void test_token_info(ev_context ctx) {
    ev_section("stream token info / confidence");
    char* prompt = ev_test_chat(ctx, "Say something.");
    if (!prompt) return;
    ev_generation_params p = ev_test_greedy(12);
    p.confidence_threshold = 0.99f; /* a small model is rarely that sure: hand-off expected */
    ev_error_t err;
    ev_stream s = ev_generate_stream(ctx, prompt, &p, &err);
    CHECK(s != NULL);
    if (s) {
        ev_stream_token_info ti;
        CHECK(ev_stream_get_token_info(s, &ti) == EV_SUCCESS);
        CHECK(ti.token_index == 0 && ti.confidence == -1.0f && ti.avg_confidence == -1.0f && !ti.needs_cloud_handoff);
        int last = 0;
        char* piece;
        bool ok = true;
        while ((piece = ev_stream_next(s, &err)) != NULL) {
            ev_free_string(piece);
            CHECK(ev_stream_get_token_info(s, &ti) == EV_SUCCESS);
            ok = ok && ti.confidence >= 0.0f && ti.confidence <= 1.0f && ti.avg_confidence >= 0.0f &&
                 ti.avg_confidence <= 1.0f && ti.token_index > last;
            last = ti.token_index;
        }
        CHECK(ok);
        printf("  tokens=%d last=%.3f avg=%.3f handoff=%d\n", ti.token_index, ti.confidence, ti.avg_confidence,
               ti.needs_cloud_handoff);
        CHECK(ti.token_index >= 3);
        CHECK(ti.needs_cloud_handoff == (ti.avg_confidence < 0.99f));
        CHECK_ERR(ev_stream_get_token_info(s, NULL), EV_ERROR_INVALID_PARAM, ev_last_error_message(), "info");
        ev_stream_free(s);
    }
    /* threshold 0: not computed */
    p.confidence_threshold = 0.0f;
    s = ev_generate_stream(ctx, prompt, &p, &err);
    if (s) {
        ev_free_string(ev_stream_next(s, &err));
        ev_stream_token_info ti;
        CHECK(ev_stream_get_token_info(s, &ti) == EV_SUCCESS);
        CHECK(ti.confidence == -1.0f && ti.token_index >= 1 && !ti.needs_cloud_handoff);
        ev_stream_free(s);
    }
    p.confidence_threshold = 1.5f;
    char* out = (char*)1;
    CHECK_ERR(ev_generate(ctx, prompt, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx),
              "confidence_threshold");
    ev_free_string(prompt);
}

/* ---------------------------------------------------------------------- */
static void test_grammar(ev_context ctx) {
    ev_section("grammar (GBNF)");
    char* prompt = ev_test_chat(ctx, "Is the sky blue? Answer yes or no.");
    if (!prompt) return;
    ev_generation_params p = ev_test_greedy(8);
    p.grammar_str = "root ::= \"yes\" | \"no\"";
    char* out = ev_test_generate(ctx, prompt, &p);
    printf("  greedy -> \"%s\"\n", out ? out : "");
    CHECK(out && (strcmp(out, "yes") == 0 || strcmp(out, "no") == 0));
    ev_free_string(out);
    /* sampled, several seeds: always inside the grammar */
    p.temperature = 1.5f;
    p.top_k = 0;
    p.top_p = 1.0f;
    ev_generation_extras x;
    ev_generation_extras_default(&x);
    p.reserved = &x;
    for (int seed = 1; seed <= 4; ++seed) {
        x.seed = seed;
        out = ev_test_generate(ctx, prompt, &p);
        CHECK_MSG(out && (strcmp(out, "yes") == 0 || strcmp(out, "no") == 0), "seed %d -> \"%s\"", seed, out);
        ev_free_string(out);
    }
    /* a named root, and a grammar the model would not write unprompted */
    p.reserved = NULL;
    p.temperature = 0.0f;
    p.grammar_str = "answer ::= [0-9] [0-9] \"-\" [a-z]+ \".\"";
    p.grammar_root = "answer";
    p.max_tokens = 20;
    out = ev_test_generate(ctx, prompt, &p);
    printf("  digits grammar -> \"%s\"\n", out ? out : "");
    CHECK(out && strlen(out) >= 5 && out[0] >= '0' && out[0] <= '9' && out[2] == '-');
    ev_free_string(out);

    /* invalid grammars */
    p.grammar_root = NULL;
    const char* bad[] = {"root ::= (", "root ::= \"yes", "this is not a grammar", "root ::= undefined_rule"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        p.grammar_str = bad[i];
        out = (char*)1;
        CHECK_ERR(ev_generate(ctx, prompt, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "grammar");
        CHECK(out == NULL);
        ev_error_t err;
        CHECK(ev_generate_stream(ctx, prompt, &p, &err) == NULL);
        CHECK_ERR(err, EV_ERROR_INVALID_PARAM, ev_last_error_message(), "grammar");
    }
    p.grammar_str = "root ::= \"yes\"";
    p.grammar_root = "start"; /* no such rule */
    CHECK_ERR(ev_generate(ctx, prompt, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "start");
    /* the context is fine afterwards */
    p.grammar_str = NULL;
    p.grammar_root = NULL;
    p.max_tokens = 4;
    ev_free_string(ev_test_generate(ctx, prompt, &p));
    ev_free_string(prompt);
}

/* ---------------------------------------------------------------------- */
static void test_bad_params(ev_context ctx) {
    ev_section("bad generation parameters");
    struct {
        const char* what;
        ev_generation_params p;
        const char* needle;
    } cases[16];
    int n = 0;
#define CASE(field_expr, needle_)                  \
    do {                                           \
        cases[n].p = ev_test_greedy(4);            \
        ev_generation_params* q = &cases[n].p;     \
        field_expr;                                \
        cases[n].what = #field_expr;               \
        cases[n].needle = needle_;                 \
        ++n;                                       \
    } while (0)
    CASE(q->max_tokens = -1, "max_tokens");
    CASE(q->temperature = -0.5f, "temperature");
    CASE(q->temperature = NAN, "temperature");
    CASE(q->top_p = 1.5f, "top_p");
    CASE(q->top_p = -0.1f, "top_p");
    CASE(q->top_k = -1, "top_k");
    CASE(q->repeat_penalty = 0.0f, "repeat_penalty");
    CASE(q->frequency_penalty = INFINITY, "frequency_penalty");
    CASE(q->presence_penalty = NAN, "presence_penalty");
#undef CASE
    for (int i = 0; i < n; ++i) {
        char* out = (char*)1;
        ev_error_t rc = ev_generate(ctx, "Hello", &cases[i].p, &out);
        printf("  %-32s -> %d \"%s\"\n", cases[i].what, rc, ev_get_last_error(ctx));
        CHECK_ERR(rc, EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), cases[i].needle);
        CHECK_ERR(rc, EV_ERROR_INVALID_PARAM, ev_last_error_message(), cases[i].needle);
        CHECK(out == NULL);
        ev_error_t err = EV_SUCCESS;
        CHECK(ev_generate_stream(ctx, "Hello", &cases[i].p, &err) == NULL);
        CHECK_ERR(err, EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), cases[i].needle);
    }
    ev_generation_params p = ev_test_greedy(4);
    char* out = (char*)1;
    CHECK_ERR(ev_generate(ctx, NULL, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "prompt");
    CHECK(out == NULL);
    CHECK_ERR(ev_generate(ctx, "Hello", &p, NULL), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "output");
    ev_error_t err;
    CHECK(ev_generate_stream(ctx, NULL, &p, &err) == NULL);
    CHECK_ERR(err, EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "prompt");
    ev_stream sn = ev_generate_stream(ctx, "Hello", &p, NULL); /* NULL error pointer allowed */
    CHECK(sn != NULL);
    ev_stream_free(sn);
    /* an empty prompt */
    CHECK_ERR(ev_generate(ctx, "", &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), "empty");
    /* the context is fine after all of that */
    out = ev_test_generate(ctx, "Hello", &p);
    CHECK(out != NULL);
    ev_free_string(out);
}

/* ---------------------------------------------------------------------- */
static void test_small_context(void) {
    ev_section("prompt longer than the context; full context ends generation");
    ev_context c = ev_test_open(g_path, 64, true);
    CHECK(c != NULL);
    if (!c) return;
    char prompt[4096] = "";
    for (int i = 0; i < 40; ++i) strcat(prompt, "apples and pears, ");
    char* out = (char*)1;
    ev_generation_params p = ev_test_greedy(8);
    ev_error_t rc = ev_generate(c, prompt, &p, &out);
    printf("  -> %d \"%s\"\n", rc, ev_get_last_error(c));
    CHECK_ERR(rc, EV_ERROR_INVALID_PARAM, ev_get_last_error(c), "context");
    CHECK(out == NULL);
    ev_error_t err;
    ev_stream s0 = ev_generate_stream(c, prompt, &p, &err);
    CHECK(s0 == NULL);
    ev_stream_free(s0);
    CHECK_ERR(err, EV_ERROR_INVALID_PARAM, ev_last_error_message(), "context");
    ev_model_info mi;
    CHECK(ev_get_model_info(c, &mi) == EV_SUCCESS && mi.context_length == 64);
    /* still usable; a long answer stops when the context is full */
    p.max_tokens = 500;
    out = ev_test_generate(c, "1, 2, 3, 4, 5,", &p);
    ev_generation_stats s = ev_test_stats(c);
    printf("  full context: prompt %d + generated %d, reason %d\n", s.prompt_tokens, s.generated_tokens,
           s.finish_reason);
    CHECK(out && strlen(out) > 0);
    CHECK(s.finish_reason == EV_FINISH_LENGTH && s.prompt_tokens + s.generated_tokens <= 65);
    CHECK(s.generated_tokens > 30);
    ev_free_string(out);
    /* params NULL = the defaults (512 tokens at 0.8: the full context ends it) */
    out = NULL;
    CHECK(ev_generate(c, "Hi", NULL, &out) == EV_SUCCESS && out != NULL && ev_utf8_valid(out));
    ev_free_string(out);
    ev_free(c);
}

/* ---------------------------------------------------------------------- */
static void test_stream_rules(ev_context ctx) {
    ev_section("streams: one per context, cancel, end, free after ev_free");
    ev_generation_params p = ev_test_greedy(40);
    ev_error_t err;
    ev_stream s = ev_generate_stream(ctx, "1, 2, 3, 4,", &p, &err);
    CHECK(s != NULL && err == EV_SUCCESS);
    if (!s) return;
    CHECK(ev_stream_has_next(s));
    char* piece = ev_stream_next(s, &err);
    CHECK(piece != NULL && err == EV_SUCCESS);
    ev_free_string(piece);

    /* one stream per context; no blocking generate beside it */
    ev_stream s2 = ev_generate_stream(ctx, "Hello", &p, &err);
    CHECK(s2 == NULL);
    CHECK_ERR(err, EV_ERROR_CONTEXT_INVALID, ev_get_last_error(ctx), "stream");
    char* out = (char*)1;
    CHECK_ERR(ev_generate(ctx, "Hello", &p, &out), EV_ERROR_CONTEXT_INVALID, ev_get_last_error(ctx), "stream");
    CHECK(out == NULL);
    CHECK_ERR(ev_reset(ctx), EV_ERROR_CONTEXT_INVALID, ev_get_last_error(ctx), "stream");
    /* the stream still works */
    piece = ev_stream_next(s, &err);
    CHECK(piece != NULL && err == EV_SUCCESS);
    ev_free_string(piece);

    /* cancel: the next call ends with STREAM_ENDED, and keeps doing so */
    ev_stream_cancel(s);
    CHECK(!ev_stream_has_next(s));
    piece = ev_stream_next(s, &err);
    CHECK(piece == NULL);
    CHECK_ERR(err, EV_ERROR_STREAM_ENDED, ev_last_error_message(), "cancel");
    piece = ev_stream_next(s, &err);
    CHECK(piece == NULL && err == EV_ERROR_STREAM_ENDED);
    ev_generation_stats st;
    CHECK(ev_stream_get_stats(s, &st) == EV_SUCCESS && st.finish_reason == EV_FINISH_CANCELLED);
    ev_stream_cancel(s); /* twice: harmless */
    ev_stream_free(s);

    /* after the free a new stream and a blocking generate work */
    out = ev_test_generate(ctx, "Hello", &p);
    ev_free_string(out);

    /* a finished stream: NULL + SUCCESS once, then STREAM_ENDED; the slot is free
     * again once it has finished, even before ev_stream_free */
    p.max_tokens = 3;
    s = ev_generate_stream(ctx, "Hello", &p, &err);
    CHECK(s != NULL);
    if (s) {
        char* cat = drain(s, NULL, NULL, &err);
        CHECK(err == EV_SUCCESS);
        free(cat);
        CHECK(!ev_stream_has_next(s));
        CHECK(ev_stream_next(s, &err) == NULL && err == EV_ERROR_STREAM_ENDED);
        CHECK(ev_stream_get_stats(s, &st) == EV_SUCCESS && st.finish_reason == EV_FINISH_LENGTH &&
              st.generated_tokens == 3);
        out = ev_test_generate(ctx, "Hello", &p);
        ev_free_string(out);
        ev_stream_free(s);
    }

    /* ev_generate_cancel also cancels a stream of the context */
    p.max_tokens = 40;
    s = ev_generate_stream(ctx, "1, 2, 3, 4,", &p, &err);
    CHECK(s != NULL);
    if (s) {
        ev_free_string(ev_stream_next(s, &err));
        CHECK(ev_generate_cancel(ctx) == EV_SUCCESS);
        int extra = 0;
        while ((piece = ev_stream_next(s, &err)) != NULL) {
            ++extra;
            ev_free_string(piece);
        }
        printf("  after ev_generate_cancel: %d more pieces, end code %d\n", extra, err);
        CHECK(extra <= 1);
        CHECK_ERR(err, EV_ERROR_STREAM_ENDED, ev_last_error_message(), "cancel");
        CHECK(ev_stream_get_stats(s, &st) == EV_SUCCESS && st.finish_reason == EV_FINISH_CANCELLED);
        CHECK(!ev_stream_has_next(s));
        ev_stream_free(s);
    }
    /* a cancel with nothing running has no effect on the next call */
    CHECK(ev_generate_cancel(ctx) == EV_SUCCESS);
    p.max_tokens = 5;
    out = ev_test_generate(ctx, "1, 2, 3, 4,", &p);
    CHECK(out && strlen(out) > 0);
    CHECK(ev_test_stats(ctx).finish_reason == EV_FINISH_LENGTH);
    ev_free_string(out);
    s = ev_generate_stream(ctx, "1, 2, 3, 4,", &p, &err);
    if (s) {
        char* cat = drain(s, NULL, NULL, &err);
        CHECK(strlen(cat) > 0 && err == EV_SUCCESS);
        free(cat);
        ev_stream_free(s);
    }

    /* streams outliving their context: only ev_stream_free, and it is safe */
    ev_context c2 = ev_test_open(g_path, 128, true);
    CHECK(c2 != NULL);
    if (c2) {
        ev_stream started = ev_generate_stream(c2, "Once upon a time", &p, &err);
        CHECK(started != NULL);
        ev_free_string(ev_stream_next(started, &err));
        ev_free(c2);
        ev_stream_free(started);
    }
    c2 = ev_test_open(g_path, 128, true);
    if (c2) {
        ev_stream unstarted = ev_generate_stream(c2, "Once upon a time", &p, &err);
        CHECK(unstarted != NULL);
        ev_free(c2);
        ev_stream_free(unstarted);
    }
}

int main(void) {
    g_path = ev_test_model_or_skip("model");
    ev_set_verbose(false);
    double t0 = ev_now_ms();
    ev_section("load");
    ev_context ctx = ev_test_open(g_path, 512, true);
    CHECK(ctx != NULL);
    if (!ctx) return ev_test_summary("model");
    CHECK(ev_is_valid(ctx));

    test_model_info(ctx);
    test_generate_text(ctx);
    test_paris(ctx);
    test_seeds(ctx);
    test_stop_sequences(ctx);
    test_utf8_stream(ctx);
    test_prompt_cache_reset(ctx);
    test_embed(ctx);
    test_token_info(ctx);
    test_grammar(ctx);
    test_bad_params(ctx);
    test_stream_rules(ctx);
    test_small_context();

    ev_free(ctx);
    printf("model: %.1f s\n", (ev_now_ms() - t0) / 1000.0);
    return ev_test_summary("model");
}

/* model_logprobs: per-token logprobs (ev_generation_extras.top_logprobs,
 * ev_get_last_logprobs, ev_stream_get_logprobs).
 *
 * The numbers are the log-softmax the greedy pick sees (after grammar and
 * penalties, before temperature and truncation), so: with temperature 0 the
 * chosen token is the best alternative; the greedy fast path (logits read
 * directly) and the full sampler chain (temperature 1, top_k 1 picks the same
 * tokens through llama_sampler_sample) give bit-identical entries; a stream's
 * entries, call by call, are ev_generate's; the first token's numbers are
 * the log-softmax of llama.cpp's own logits for the prompt.
 */
#include "edge_veda.h"
#include "ev_test.h"
#include "llama.h"

#include <math.h>
#include <stddef.h>

#define N_GEN 24

static const char* k_prompt =
    "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n";

/* Greedy params with extras x (top_logprobs k) attached. */
static ev_generation_params with_logprobs(ev_generation_extras* x, int k, int max_tokens) {
    ev_generation_params p = ev_test_greedy(max_tokens);
    ev_generation_extras_default(x);
    x->top_logprobs = k;
    p.reserved = x;
    return p;
}

/* ev_generate, then its logprobs (free both). */
static char* generate_lp(ev_context ctx, const char* prompt, const ev_generation_params* p, ev_logprobs* lp) {
    char* out = ev_test_generate(ctx, prompt, p);
    memset(lp, 0, sizeof *lp);
    CHECK(ev_get_last_logprobs(ctx, lp) == EV_SUCCESS);
    return out;
}

/* The invariants of one list of greedy entries with k alternatives (-1: any); the
 * joined token texts equal `text` when it is not NULL. */
static void check_greedy_entries(const ev_logprobs* lp, int k, const char* text) {
    size_t joined = 0;
    for (size_t i = 0; i < lp->num_tokens; ++i) {
        const ev_token_logprob* t = &lp->tokens[i];
        CHECK_MSG(t->logprob <= 0.0f && isfinite(t->logprob), "token %zu logprob %g", i, t->logprob);
        CHECK(t->text != NULL && t->text[t->text_len] == '\0');
        if (k >= 0) CHECK_MSG(t->num_top == k, "token %zu has %d alternatives, want %d", i, t->num_top, k);
        if (t->num_top == 0) {
            CHECK(t->top == NULL);
            continue;
        }
        CHECK_MSG(t->top[0].token == t->token, "token %zu: chosen %d, best %d", i, t->token, t->top[0].token);
        CHECK(t->top[0].logprob == t->logprob);
        double sum = 0;
        for (int j = 0; j < t->num_top; ++j) {
            CHECK(t->top[j].logprob <= 0.0f);
            CHECK(t->top[j].text != NULL && t->top[j].text[t->top[j].text_len] == '\0');
            if (j > 0) CHECK(t->top[j].logprob <= t->top[j - 1].logprob);
            sum += exp((double)t->top[j].logprob);
        }
        CHECK_MSG(sum <= 1.0 + 1e-5, "token %zu: alternatives sum to %g", i, sum);
        if (text != NULL) {
            CHECK_MSG(joined + t->text_len <= strlen(text) && memcmp(text + joined, t->text, t->text_len) == 0,
                      "token %zu text does not continue the output", i);
            joined += t->text_len;
        }
    }
    if (text != NULL) CHECK_MSG(joined == strlen(text), "joined %zu bytes, output %zu", joined, strlen(text));
}

/* Two lists are the same, to the bit. */
static bool same_entries(const ev_logprobs* a, const ev_logprobs* b) {
    if (a->num_tokens != b->num_tokens) return false;
    for (size_t i = 0; i < a->num_tokens; ++i) {
        const ev_token_logprob *x = &a->tokens[i], *y = &b->tokens[i];
        if (x->token != y->token || x->logprob != y->logprob || x->num_top != y->num_top) return false;
        if (x->text_len != y->text_len || memcmp(x->text, y->text, x->text_len) != 0) return false;
        for (int j = 0; j < x->num_top; ++j) {
            if (x->top[j].token != y->top[j].token || x->top[j].logprob != y->top[j].logprob) return false;
        }
    }
    return true;
}

static void quiet_log(enum ggml_log_level level, const char* text, void* user) {
    (void)level;
    (void)text;
    (void)user;
}

/* The first generated token's entry against a log-softmax (in double) of the
 * logits a plain llama.cpp context gives for the prompt. */
static void check_against_llama(const char* path, const ev_logprobs* lp) {
    llama_log_set(quiet_log, NULL);
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = 1;
    cp.n_seq_max = 1;
    struct llama_model* mdl = llama_model_load_from_file(path, mp);
    struct llama_context* lctx = mdl ? llama_init_from_model(mdl, cp) : NULL;
    CHECK(lctx != NULL);
    if (lctx == NULL || lp->num_tokens == 0) goto done;
    const struct llama_vocab* vocab = llama_model_get_vocab(mdl);
    llama_token toks[512];
    int n = llama_tokenize(vocab, k_prompt, (int)strlen(k_prompt), toks, 512, llama_vocab_get_add_bos(vocab), true);
    CHECK(n > 0 && llama_decode(lctx, llama_batch_get_one(toks, n)) == 0);
    const float* logits = llama_get_logits_ith(lctx, -1);
    int nv = llama_vocab_n_tokens(vocab);
    double mx = logits[0], z = 0;
    for (int i = 1; i < nv; ++i) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < nv; ++i) z += exp((double)logits[i] - mx);
    double log_z = mx + log(z);
    const ev_token_logprob* t = &lp->tokens[0];
    CHECK_MSG(fabs(t->logprob - (logits[t->token] - log_z)) < 1e-3, "chosen: ours %g, llama.cpp %g", t->logprob,
              logits[t->token] - log_z);
    for (int j = 0; j < t->num_top; ++j) {
        double want = logits[t->top[j].token] - log_z;
        CHECK_MSG(fabs(t->top[j].logprob - want) < 1e-3, "alternative %d: ours %g, llama.cpp %g", j,
                  t->top[j].logprob, want);
    }
done:
    if (lctx) llama_free(lctx);
    if (mdl) llama_model_free(mdl);
}

int main(void) {
    const char* path = ev_test_model_or_skip("model_logprobs");
    ev_context ctx = ev_test_open(path, 512, false);
    CHECK(ctx != NULL);
    if (ctx == NULL) return ev_test_summary("model_logprobs");
    ev_set_prompt_cache(ctx, false);

    ev_section("defaults and bounds");
    {
        ev_generation_extras x;
        ev_generation_extras_default(&x);
        CHECK(x.top_logprobs == -1);
        ev_generation_params p = ev_test_greedy(4);
        char* out = ev_test_generate(ctx, k_prompt, &p);
        ev_free_string(out);
        ev_logprobs lp;
        CHECK(ev_get_last_logprobs(ctx, &lp) == EV_SUCCESS);
        CHECK(lp.num_tokens == 0 && lp.tokens == NULL && lp.internal == NULL);
        ev_free_logprobs(&lp);
        ev_free_logprobs(NULL);

        int bad[] = {21, -2, 1000};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
            p = with_logprobs(&x, bad[i], 4);
            out = (char*)1;
            CHECK_ERR(ev_generate(ctx, k_prompt, &p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx),
                      "top_logprobs");
            CHECK(out == NULL);
            ev_error_t err = EV_SUCCESS;
            CHECK(ev_generate_stream(ctx, k_prompt, &p, &err) == NULL);
            CHECK(err == EV_ERROR_INVALID_PARAM);
        }
        /* a failed call leaves no entries behind (of the call before it) */
        p = with_logprobs(&x, 2, 4);
        ev_free_string(generate_lp(ctx, k_prompt, &p, &lp));
        CHECK(lp.num_tokens > 0);
        ev_free_logprobs(&lp);
        p.temperature = -1.0f;
        out = NULL;
        CHECK(ev_generate(ctx, k_prompt, &p, &out) == EV_ERROR_INVALID_PARAM);
        CHECK(ev_get_last_logprobs(ctx, &lp) == EV_SUCCESS && lp.num_tokens == 0);
        /* a 1.3 caller's struct (ending before top_logprobs) still works: off */
        p = with_logprobs(&x, 5, 4);
        x.struct_size = offsetof(ev_generation_extras, top_logprobs);
        out = ev_test_generate(ctx, k_prompt, &p);
        ev_free_string(out);
        CHECK(ev_get_last_logprobs(ctx, &lp) == EV_SUCCESS && lp.num_tokens == 0);
        CHECK(ev_get_last_logprobs(ctx, NULL) == EV_ERROR_INVALID_PARAM);
        CHECK(ev_get_last_logprobs(NULL, &lp) == EV_ERROR_CONTEXT_INVALID);
        CHECK(ev_stream_get_logprobs(NULL, &lp) == EV_ERROR_INVALID_PARAM);
    }

    ev_section("greedy: the chosen token is the best, texts join to the output");
    ev_logprobs greedy;
    {
        ev_generation_extras x;
        ev_generation_params p = with_logprobs(&x, 5, N_GEN);
        char* out = generate_lp(ctx, k_prompt, &p, &greedy);
        ev_generation_stats st = ev_test_stats(ctx);
        CHECK_MSG(greedy.num_tokens == (size_t)st.generated_tokens, "%zu entries, %d tokens", greedy.num_tokens,
                  st.generated_tokens);
        CHECK(greedy.num_tokens > 0);
        check_greedy_entries(&greedy, 5, out);
        ev_free_string(out);
        check_against_llama(path, &greedy);

        /* logprobs on do not change the text */
        ev_generation_params plain = ev_test_greedy(N_GEN);
        char* out2 = ev_test_generate(ctx, k_prompt, &plain);
        out = ev_test_generate(ctx, k_prompt, &p);
        CHECK(out && out2 && strcmp(out, out2) == 0);
        ev_free_string(out);
        ev_free_string(out2);

        /* k = 0: the token's own logprob only; k = 20: the most */
        ev_logprobs lp0, lp20;
        p = with_logprobs(&x, 0, N_GEN);
        ev_free_string(generate_lp(ctx, k_prompt, &p, &lp0));
        check_greedy_entries(&lp0, 0, NULL);
        p = with_logprobs(&x, 20, N_GEN);
        ev_free_string(generate_lp(ctx, k_prompt, &p, &lp20));
        check_greedy_entries(&lp20, 20, NULL);
        CHECK(lp0.num_tokens == greedy.num_tokens && lp20.num_tokens == greedy.num_tokens);
        for (size_t i = 0; i < lp0.num_tokens && i < greedy.num_tokens; ++i) {
            CHECK(lp0.tokens[i].logprob == greedy.tokens[i].logprob);
            CHECK(lp20.tokens[i].top[4].logprob == greedy.tokens[i].top[4].logprob);
        }
        ev_free_logprobs(&lp0);
        ev_free_logprobs(&lp20);
        CHECK(lp0.tokens == NULL && lp0.num_tokens == 0);
    }

    ev_section("the fast path and the sampler chain give the same numbers");
    {
        float repeats[] = {1.0f, 1.3f};
        for (int r = 0; r < 2; ++r) {
            ev_generation_extras x;
            ev_generation_params fast = with_logprobs(&x, 8, N_GEN);
            fast.repeat_penalty = repeats[r];
            fast.frequency_penalty = r ? 0.2f : 0.0f;
            ev_logprobs a, b;
            ev_free_string(generate_lp(ctx, k_prompt, &fast, &a));
            ev_generation_params chain = fast;  /* same extras */
            chain.temperature = 1.0f;
            chain.top_k = 1;
            chain.top_p = 1.0f;
            ev_free_string(generate_lp(ctx, k_prompt, &chain, &b));
            CHECK(a.num_tokens > 0);
            CHECK_MSG(same_entries(&a, &b), "repeat %g: fast path and chain differ", repeats[r]);
            check_greedy_entries(&b, 8, NULL);
            ev_free_logprobs(&a);
            ev_free_logprobs(&b);
        }
    }

    ev_section("a grammar: only allowed tokens are listed");
    {
        ev_generation_extras x;
        ev_generation_params p = with_logprobs(&x, 20, 6);
        p.grammar_str = "root ::= [0-9]+";
        ev_logprobs lp;
        char* out = generate_lp(ctx, "Count: 1, 2, 3,", &p, &lp);
        CHECK(lp.num_tokens > 0);
        check_greedy_entries(&lp, -1, out);
        for (size_t i = 0; i < lp.num_tokens; ++i) {
            for (int j = 0; j < lp.tokens[i].num_top; ++j) {
                const ev_top_logprob* a = &lp.tokens[i].top[j];
                for (size_t c = 0; c < a->text_len; ++c) {
                    CHECK_MSG(a->text[c] >= '0' && a->text[c] <= '9', "alternative \"%s\" is not digits", a->text);
                }
            }
        }
        ev_free_logprobs(&lp);
        ev_free_string(out);
    }

    ev_section("a stream's entries, call by call, are ev_generate's");
    {
        ev_generation_extras x;
        ev_generation_params p = with_logprobs(&x, 5, N_GEN);
        ev_error_t err = EV_SUCCESS;
        ev_stream s = ev_generate_stream(ctx, k_prompt, &p, &err);
        CHECK(s != NULL);
        ev_token_logprob all[N_GEN + 1];
        ev_logprobs kept[N_GEN + 2];
        size_t n_all = 0, n_kept = 0;
        bool ended = false;
        while (s != NULL && !ended && n_kept < N_GEN + 1) {
            char* piece = ev_stream_next(s, &err);
            CHECK(err == EV_SUCCESS);
            ended = piece == NULL;
            ev_free_string(piece);
            ev_logprobs lp;
            CHECK(ev_stream_get_logprobs(s, &lp) == EV_SUCCESS);
            for (size_t i = 0; i < lp.num_tokens && n_all < N_GEN + 1; ++i) all[n_all++] = lp.tokens[i];
            kept[n_kept++] = lp;  /* freed below: the entries point into it */
        }
        ev_stream_free(s);
        ev_logprobs joined = {all, n_all, NULL};
        CHECK_MSG(same_entries(&joined, &greedy), "stream %zu entries, generate %zu", n_all, greedy.num_tokens);
        for (size_t i = 0; i < n_kept; ++i) ev_free_logprobs(&kept[i]);
    }
    ev_free_logprobs(&greedy);

    ev_free(ctx);
    return ev_test_summary("model_logprobs");
}

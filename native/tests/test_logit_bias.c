/* model_logit_bias: ev_generation_extras.logit_bias (OpenAI's logit_bias).
 *
 * A -INFINITY bias bans a token: greedy and sampled text never contain it,
 * and logprobs never list it. A large positive bias on the runner-up makes it
 * the greedy pick. The biased distribution is what logprobs report. Bad
 * entries fail with INVALID_PARAM naming the entry, from ev_generate and
 * ev_generate_stream alike, and an older caller's struct (ending before
 * logit_bias) works with no bias.
 */
#include "edge_veda.h"
#include "ev_test.h"

#include <math.h>
#include <stddef.h>

#define N_GEN 16

static const char* k_prompt =
    "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n";

/* Greedy params with extras x attached: top_logprobs k, the given biases. */
static ev_generation_params with_bias(ev_generation_extras* x, const ev_logit_bias* bias, int n, int k) {
    ev_generation_params p = ev_test_greedy(N_GEN);
    ev_generation_extras_default(x);
    x->top_logprobs = k;
    x->logit_bias = bias;
    x->num_logit_bias = n;
    p.reserved = x;
    return p;
}

static char* generate_lp(ev_context ctx, const ev_generation_params* p, ev_logprobs* lp) {
    char* out = ev_test_generate(ctx, k_prompt, p);
    memset(lp, 0, sizeof *lp);
    CHECK(ev_get_last_logprobs(ctx, lp) == EV_SUCCESS);
    return out;
}

static bool lists_token(const ev_logprobs* lp, int32_t token) {
    for (size_t i = 0; i < lp->num_tokens; ++i) {
        if (lp->tokens[i].token == token) return true;
        for (int j = 0; j < lp->tokens[i].num_top; ++j) {
            if (lp->tokens[i].top[j].token == token) return true;
        }
    }
    return false;
}

static void expect_bad(ev_context ctx, ev_generation_params* p, const char* what, const char* needle) {
    char* out = (char*)1;
    CHECK_ERR(ev_generate(ctx, k_prompt, p, &out), EV_ERROR_INVALID_PARAM, ev_get_last_error(ctx), needle);
    CHECK_MSG(out == NULL, "%s: output not NULL", what);
    ev_error_t err = EV_SUCCESS;
    ev_stream s = ev_generate_stream(ctx, k_prompt, p, &err);
    CHECK_MSG(s == NULL && err == EV_ERROR_INVALID_PARAM, "%s: stream %p, error %d", what, (void*)s, err);
    CHECK_MSG(ev_test_contains(ev_get_last_error(ctx), needle), "%s: \"%s\" lacks \"%s\"", what,
              ev_get_last_error(ctx), needle);
}

int main(void) {
    const char* path = ev_test_model_or_skip("model_logit_bias");
    ev_context ctx = ev_test_open(path, 512, false);
    CHECK(ctx != NULL);
    if (ctx == NULL) return ev_test_summary("model_logit_bias");
    ev_set_prompt_cache(ctx, false);

    ev_section("defaults");
    ev_generation_extras x;
    ev_generation_extras_default(&x);
    CHECK(x.logit_bias == NULL && x.num_logit_bias == 0);

    /* the unbiased greedy answer, with its alternatives */
    ev_logprobs base;
    ev_generation_params p = with_bias(&x, NULL, 0, 5);
    char* base_text = generate_lp(ctx, &p, &base);
    CHECK(base.num_tokens >= 2 && base.tokens[0].num_top == 5);
    if (base.num_tokens < 2 || base.tokens[0].num_top < 5) {
        ev_free_string(base_text);
        ev_free(ctx);
        return ev_test_summary("model_logit_bias");
    }
    int32_t first = base.tokens[0].token;
    int32_t runner_up = base.tokens[0].top[1].token;

    ev_section("-INFINITY bans a token: greedy, the chain, a stream");
    {
        ev_logit_bias ban = {first, -INFINITY};
        ev_logprobs lp;
        p = with_bias(&x, &ban, 1, 20);
        char* out = generate_lp(ctx, &p, &lp);
        CHECK(lp.num_tokens > 0);
        CHECK_MSG(!lists_token(&lp, first), "banned token %d still listed", first);
        /* the runner-up moves up: it is now the first pick */
        CHECK_MSG(lp.tokens[0].token == runner_up, "first token %d, want the runner-up %d", lp.tokens[0].token,
                  runner_up);
        CHECK(out && base_text && strcmp(out, base_text) != 0);

        /* the sampled path (the sampler chain with a draw) never picks it either */
        for (int seed = 0; seed < 4; ++seed) {
            ev_generation_extras xs;
            ev_generation_params ps = with_bias(&xs, &ban, 1, 20);
            ps.temperature = 1.5f;
            ps.top_k = 0;
            ps.top_p = 1.0f;
            xs.seed = seed;
            ev_logprobs ls;
            ev_free_string(generate_lp(ctx, &ps, &ls));
            CHECK_MSG(!lists_token(&ls, first), "seed %d: banned token %d sampled or listed", seed, first);
            ev_free_logprobs(&ls);
        }

        /* a stream gives ev_generate's text */
        ev_error_t err = EV_SUCCESS;
        ev_stream s = ev_generate_stream(ctx, k_prompt, &p, &err);
        CHECK(s != NULL && err == EV_SUCCESS);
        char joined[4096] = "";
        size_t n = 0;
        while (s != NULL) {
            char* piece = ev_stream_next(s, &err);
            if (piece == NULL) break;
            size_t len = strlen(piece);
            if (n + len < sizeof joined) {
                memcpy(joined + n, piece, len + 1);
                n += len;
            }
            ev_free_string(piece);
        }
        CHECK(err == EV_SUCCESS);
        CHECK_MSG(out && strcmp(joined, out) == 0, "stream \"%s\" != generate \"%s\"", joined, out ? out : "");
        ev_stream_free(s);
        ev_free_string(out);
        ev_free_logprobs(&lp);
    }

    ev_section("a positive bias makes the runner-up the greedy pick; logprobs report it");
    {
        ev_logit_bias favour = {runner_up, 50.0f};
        ev_logprobs lp;
        p = with_bias(&x, &favour, 1, 3);
        p.max_tokens = 1;
        ev_free_string(generate_lp(ctx, &p, &lp));
        CHECK(lp.num_tokens == 1);
        if (lp.num_tokens == 1) {
            CHECK_MSG(lp.tokens[0].token == runner_up, "picked %d, want %d", lp.tokens[0].token, runner_up);
            /* +50 on the logit: its probability dominates the biased distribution */
            CHECK_MSG(lp.tokens[0].logprob > -1e-3f, "logprob %g", lp.tokens[0].logprob);
        }
        ev_free_logprobs(&lp);

        /* two entries for one token add up: +25 twice is +50 */
        ev_logit_bias halves[] = {{runner_up, 25.0f}, {runner_up, 25.0f}};
        ev_logprobs lp2;
        p = with_bias(&x, halves, 2, 3);
        p.max_tokens = 1;
        ev_free_string(generate_lp(ctx, &p, &lp2));
        CHECK(lp2.num_tokens == 1 && lp2.tokens[0].token == runner_up);
        ev_free_logprobs(&lp2);

        /* a small bias shifts the logprob by what softmax says: the unbiased
         * logprobs of the first token's top 2, then +1 on the runner-up */
        ev_logit_bias one = {runner_up, 1.0f};
        ev_logprobs lp3;
        p = with_bias(&x, &one, 1, 5);
        p.max_tokens = 1;
        ev_free_string(generate_lp(ctx, &p, &lp3));
        if (lp3.num_tokens == 1 && lp3.tokens[0].num_top >= 2) {
            double a = base.tokens[0].top[0].logprob, b = base.tokens[0].top[1].logprob;
            /* the log-odds between the two move by exactly the bias */
            double before = b - a;
            double after = -INFINITY;
            for (int j = 0; j < lp3.tokens[0].num_top; ++j) {
                if (lp3.tokens[0].top[j].token == runner_up) {
                    for (int k = 0; k < lp3.tokens[0].num_top; ++k) {
                        if (lp3.tokens[0].top[k].token == first) {
                            after = lp3.tokens[0].top[j].logprob - lp3.tokens[0].top[k].logprob;
                        }
                    }
                }
            }
            CHECK_MSG(fabs(after - before - 1.0) < 1e-3, "log-odds %g -> %g, want +1", before, after);
        } else {
            CHECK(false);
        }
        ev_free_logprobs(&lp3);
    }

    ev_section("bad entries fail with INVALID_PARAM naming them; the context stays usable");
    {
        ev_logit_bias neg = {-1, 1.0f}, past = {1 << 30, 1.0f}, nan_b = {first, NAN},
                      inf_b = {first, INFINITY};
        p = with_bias(&x, &neg, 1, -1);
        expect_bad(ctx, &p, "token -1", "logit_bias[0].token -1");
        p = with_bias(&x, &past, 1, -1);
        expect_bad(ctx, &p, "token past the vocabulary", "is not in the vocabulary");
        p = with_bias(&x, &nan_b, 1, -1);
        expect_bad(ctx, &p, "NaN bias", "logit_bias[0].bias");
        p = with_bias(&x, &inf_b, 1, -1);
        expect_bad(ctx, &p, "+inf bias", "logit_bias[0].bias");
        p = with_bias(&x, &neg, -1, -1);
        expect_bad(ctx, &p, "num -1", "num_logit_bias");
        p = with_bias(&x, NULL, 2, -1);
        expect_bad(ctx, &p, "NULL with num 2", "logit_bias is NULL");

        ev_generation_params plain = ev_test_greedy(N_GEN);
        char* out = ev_test_generate(ctx, k_prompt, &plain);
        CHECK(out && base_text && strcmp(out, base_text) == 0);
        ev_free_string(out);
    }

    ev_section("an older caller's struct (ending before logit_bias): no bias");
    {
        ev_logit_bias ban = {first, -INFINITY};
        p = with_bias(&x, &ban, 1, -1);
        x.struct_size = offsetof(ev_generation_extras, logit_bias);
        char* out = ev_test_generate(ctx, k_prompt, &p);
        CHECK(out && base_text && strcmp(out, base_text) == 0);
        ev_free_string(out);
    }

    ev_free_string(base_text);
    ev_free_logprobs(&base);
    ev_free(ctx);
    return ev_test_summary("model_logit_bias");
}

/* model_sampling: greedy generation through our core gives exactly the text
 * of llama.cpp's own sampler chain on the same model.
 *
 * The core picks greedy tokens straight from the logits (sampler.cpp,
 * greedy_from_logits) and applies the repeat/frequency/presence penalties
 * itself (Penalties). Both are speed paths that must not change a single
 * token. The reference here is the examples/simple loop written against
 * llama.h: [llama_sampler_init_penalties,] llama_sampler_init_greedy,
 * llama_sampler_sample. Every case runs both on the same prompt, from an
 * empty KV cache, with the same context settings and thread count.
 */
#include "edge_veda.h"
#include "ev_test.h"
#include "llama.h"

#define N_GEN 64

typedef struct {
    const char* name;
    float repeat, freq, present;
} penalty_case;

static const penalty_case k_cases[] = {
    {"greedy", 1.0f, 0.0f, 0.0f},
    {"repeat_penalty 1.1", 1.1f, 0.0f, 0.0f},
    {"repeat_penalty 1.5", 1.5f, 0.0f, 0.0f},
    {"frequency 0.4 + presence 0.3", 1.0f, 0.4f, 0.3f},
    {"all three", 1.2f, 0.2f, 0.5f},
};

static const char* k_prompts[] = {
    "<|im_start|>user\nList the first ten prime numbers.<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, in a quiet village by the sea,",
    "1, 2, 3, 4, 5,",
};

static void quiet_log(enum ggml_log_level level, const char* text, void* user) {
    (void)level;
    (void)text;
    (void)user;
}

/* llama.cpp's own greedy loop; returns a malloc'ed text or NULL. */
static char* reference(struct llama_context* ctx, const struct llama_vocab* vocab, const char* prompt,
                       const penalty_case* pc) {
    int len = (int)strlen(prompt);
    bool add_bos = llama_vocab_get_add_bos(vocab);
    llama_token toks[512];
    int n = llama_tokenize(vocab, prompt, len, toks, 512, add_bos, true);
    if (n <= 0) return NULL;
    struct llama_sampler_chain_params sp = llama_sampler_chain_default_params();
    sp.no_perf = true;
    struct llama_sampler* smpl = llama_sampler_chain_init(sp);
    if (pc->repeat != 1.0f || pc->freq != 0.0f || pc->present != 0.0f) {
        llama_sampler_chain_add(smpl, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), 64, pc->repeat, pc->freq, pc->present));
    }
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    llama_memory_clear(llama_get_memory(ctx), true);
    char* text = calloc(1, 1);
    size_t text_len = 0;
    if (llama_decode(ctx, llama_batch_get_one(toks, n)) != 0) goto fail;
    for (int g = 0; g < N_GEN; ++g) {
        llama_token tok = llama_sampler_sample(smpl, ctx, -1);
        if (llama_vocab_is_eog(vocab, tok)) break;
        char buf[256];
        int k = llama_token_to_piece(vocab, tok, buf, sizeof buf, 0, false);
        if (k > 0) {
            text = realloc(text, text_len + (size_t)k + 1);
            memcpy(text + text_len, buf, (size_t)k);
            text_len += (size_t)k;
            text[text_len] = '\0';
        }
        if (g + 1 < N_GEN && llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) goto fail;
    }
    llama_sampler_free(smpl);
    return text;
fail:
    llama_sampler_free(smpl);
    free(text);
    return NULL;
}

int main(void) {
    const char* model = ev_test_model_or_skip("test_sampling");
    const int threads = 1;  // the token choice does not depend on it; 2 threads crawl on a loaded 2-core machine

    ev_section("our context");
    ev_config c;
    ev_config_default(&c);
    c.model_path = model;
    c.backend = EV_BACKEND_CPU;
    c.num_threads = threads;
    ev_error_t err = EV_SUCCESS;
    ev_context ev = ev_init(&c, &err);
    CHECK_MSG(ev != NULL, "ev_init: %d %s", (int)err, ev_last_error_message());
    if (ev == NULL) return ev_test_summary("test_sampling");
    CHECK(ev_set_prompt_cache(ev, false) == EV_SUCCESS);  // every run from an empty cache

    ev_section("llama.cpp's context (ev_config_default's settings)");
    llama_log_set(quiet_log, NULL);
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)c.context_size;
    cp.n_batch = (uint32_t)c.batch_size;
    cp.n_ubatch = (uint32_t)c.batch_size;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.n_seq_max = 1;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    struct llama_model* mdl = llama_model_load_from_file(model, mp);
    struct llama_context* lctx = mdl ? llama_init_from_model(mdl, cp) : NULL;
    CHECK(lctx != NULL);
    if (lctx == NULL) return ev_test_summary("test_sampling");
    const struct llama_vocab* vocab = llama_model_get_vocab(mdl);

    int compared = 0, nonempty = 0;
    for (size_t pi = 0; pi < sizeof k_prompts / sizeof *k_prompts; ++pi) {
        for (size_t ci = 0; ci < sizeof k_cases / sizeof *k_cases; ++ci) {
            const penalty_case* pc = &k_cases[ci];
            char label[96];
            snprintf(label, sizeof label, "prompt %zu, %s", pi, pc->name);
            ev_section(label);
            char* want = reference(lctx, vocab, k_prompts[pi], pc);
            CHECK_MSG(want != NULL, "%s: the reference loop failed", label);

            ev_generation_params gp;
            ev_generation_params_default(&gp);
            gp.max_tokens = N_GEN;
            gp.temperature = 0.0f;
            gp.repeat_penalty = pc->repeat;
            gp.frequency_penalty = pc->freq;
            gp.presence_penalty = pc->present;
            char* got = NULL;
            ev_error_t rc = ev_generate(ev, k_prompts[pi], &gp, &got);
            CHECK_MSG(rc == EV_SUCCESS, "%s: ev_generate %d %s", label, (int)rc, ev_get_last_error(ev));
            if (want != NULL && got != NULL) {
                ++compared;
                if (strlen(got) > 8) ++nonempty;
                CHECK_MSG(strcmp(want, got) == 0, "%s:\n  llama.cpp: \"%s\"\n  ours:      \"%s\"", label, want,
                          got);
            }
            free(want);
            ev_free_string(got);
        }
    }
    // the comparison ran on real text, not on empty strings
    CHECK_MSG(compared == 15, "compared %d cases", compared);
    CHECK_MSG(nonempty >= 12, "only %d of the texts have more than 8 bytes", nonempty);

    llama_free(lctx);
    llama_model_free(mdl);
    ev_free(ev);
    return ev_test_summary("test_sampling");
}

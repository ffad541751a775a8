/* llama_ref: llama.cpp's own loop, the reference for ev_bench_c. The same
 * measurements with the same options and the same JSON as
 * native/tests/bench_c.c, written directly against llama.h the way
 * llama.cpp's examples/simple does it: load, context, tokenize, decode the
 * prompt, then sample (greedy; penalties first when --repeat-penalty != 1)
 * and decode one token at a time. benchmarks/compare.py builds it against the
 * static libraries of build/llama-tools (the same pinned llama.cpp).
 *
 *   llama_ref -m MODEL [-t THREADS] [-p 128,512] [-n 128] [-r 5] [-c 2048]
 *             [--load-reps 3] [--repeat-penalty 1.0] [--prompt-file FILE] [-o OUT] [--show]
 *             [--serve]   (paired mode, as ev_bench_c --serve)
 *
 * Context options match ev_config_default(): n_ctx 2048, n_batch 512,
 * n_ubatch 512, flash attention auto, F16 KV cache, mmap.
 */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PP 8
#define MAX_REPS 64

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char* k_default_prompt =
    "The history of computing is a story of people who wanted machines to do their arithmetic. "
    "Tell it from the abacus to the microprocessor, with names and dates.";

static const char* k_filler =
    "In the morning the market opened early, and the traders compared the prices of grain, wool, "
    "salt and timber with those of the week before. A river ran beside the square; boats came down "
    "from the hills with apples, cheese and cut stone, and went back up with cloth and iron tools. ";

static void quiet_log(enum ggml_log_level level, const char* text, void* ud) {
    (void)ud;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static char* read_file(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* Tokenize as ev_generate does: BOS when the model asks, special tokens parsed. */
static llama_token* tokenize(const struct llama_vocab* vocab, const char* text, bool add_special, int* n) {
    int len = (int)strlen(text);
    int cap = len + 8;
    llama_token* toks = malloc(sizeof(llama_token) * cap);
    bool bos = add_special && llama_vocab_get_add_bos(vocab);
    int got = llama_tokenize(vocab, text, len, toks, cap, bos, true);
    if (got < 0) {
        cap = -got;
        toks = realloc(toks, sizeof(llama_token) * cap);
        got = llama_tokenize(vocab, text, len, toks, cap, bos, true);
    }
    *n = got;
    return toks;
}

static char* detokenize(const struct llama_vocab* vocab, const llama_token* toks, int n) {
    int cap = n * 8 + 16;
    char* s = malloc(cap + 1);
    int got = llama_detokenize(vocab, toks, n, s, cap, false, false);
    if (got < 0) {
        cap = -got;
        s = realloc(s, cap + 1);
        got = llama_detokenize(vocab, toks, n, s, cap, false, false);
    }
    s[got < 0 ? 0 : got] = '\0';
    return s;
}

/* The same search as bench_c.c's prompt_of_tokens. */
static char* prompt_of_tokens(const struct llama_vocab* vocab, int n, int* got) {
    size_t cap = strlen(k_filler) * (size_t)(n / 20 + 2) + 1;
    char* base = malloc(cap);
    base[0] = '\0';
    while (strlen(base) + strlen(k_filler) < cap) strcat(base, k_filler);
    int nt = 0;
    llama_token* toks = tokenize(vocab, base, false, &nt);
    free(base);
    char* best = NULL;
    int best_n = -1;
    for (int d = 0; d < 16; ++d) {
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            int k = n + sgn * d;
            if (k <= 0 || k > nt) continue;
            char* text = detokenize(vocab, toks, k);
            int c = 0;
            free(tokenize(vocab, text, true, &c));
            if (c == n) {
                free(best);
                free(toks);
                *got = c;
                return text;
            }
            if (best == NULL || abs(c - n) < abs(best_n - n)) {
                free(best);
                best = text;
                best_n = c;
            } else {
                free(text);
            }
        }
    }
    free(toks);
    *got = best_n;
    return best;
}

static char* g_text = NULL; /* --show: the generated text */
static size_t g_len = 0;

typedef struct {
    int prompt_tokens, generated;
    double prompt_ms, generation_ms, first_token_ms;
} run_stats;

/* One generation from an empty KV cache, timed like the core's stats. */
static int run(struct llama_context* ctx, const struct llama_vocab* vocab, const char* text, int max_tokens,
               float repeat_penalty, run_stats* st) {
    double t_start = now_ms();
    memset(st, 0, sizeof *st);
    int n = 0;
    llama_token* toks = tokenize(vocab, text, true, &n);
    struct llama_sampler_chain_params sp = llama_sampler_chain_default_params();
    sp.no_perf = true;
    struct llama_sampler* smpl = llama_sampler_chain_init(sp);
    if (repeat_penalty != 1.0f) {
        llama_sampler_chain_add(smpl, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), 64, repeat_penalty, 0.0f, 0.0f));
    }
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    llama_memory_clear(llama_get_memory(ctx), true);
    st->prompt_tokens = n;
    int n_batch = (int)llama_n_batch(ctx);
    for (int i = 0; i < n; i += n_batch) {
        int m = n - i < n_batch ? n - i : n_batch;
        if (llama_decode(ctx, llama_batch_get_one(toks + i, m)) != 0) {
            fprintf(stderr, "llama_decode failed on the prompt\n");
            return 1;
        }
    }
    st->prompt_ms = now_ms() - t_start;
    double t_first = 0;
    char buf[256];
    for (int g = 0; g < max_tokens; ++g) {
        llama_token tok = llama_sampler_sample(smpl, ctx, -1);
        if (g == 0) t_first = now_ms();
        if (llama_vocab_is_eog(vocab, tok)) break;
        st->generated++;
        int len = llama_token_to_piece(vocab, tok, buf, sizeof buf, 0, false);
        if (g_text && len > 0) {
            g_text = realloc(g_text, g_len + (size_t)len + 1);
            memcpy(g_text + g_len, buf, (size_t)len);
            g_len += (size_t)len;
            g_text[g_len] = '\0';
        }
        if (g == 0 || st->first_token_ms == 0) {
            if (len > 0) st->first_token_ms = now_ms() - t_start;
        }
        if (st->generated >= max_tokens) break;
        if (llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) {
            fprintf(stderr, "llama_decode failed\n");
            return 1;
        }
    }
    if (st->generated > 0) st->generation_ms = now_ms() - t_first;
    llama_sampler_free(smpl);
    free(toks);
    return 0;
}

static void print_array(FILE* out, const double* v, int n) {
    fputc('[', out);
    for (int i = 0; i < n; ++i) fprintf(out, "%s%.4f", i ? ", " : "", v[i]);
    fputc(']', out);
}

static void print_int_array(FILE* out, const int* v, int n) {
    fputc('[', out);
    for (int i = 0; i < n; ++i) fprintf(out, "%s%d", i ? ", " : "", v[i]);
    fputc(']', out);
}

static void usage(void) {
    fprintf(stderr,
            "usage: llama_ref -m MODEL [-t THREADS] [-p 128,512] [-n 128] [-r 5] [-c 2048]\n"
            "                 [--load-reps 3] [--repeat-penalty 1.0] [--prompt-file FILE] [-o OUT] [--show]\n"
            "                 [--serve]\n");
}

int main(int argc, char** argv) {
    const char* model = NULL;
    const char* prompt_file = NULL;
    const char* out_path = NULL;
    int threads = 0, n_gen = 128, reps = 5, ctx_size = 2048, load_reps = 3;
    int pp_sizes[MAX_PP] = {128, 512};
    int n_pp = 2;
    float repeat_penalty = 1.0f;
    bool show = false, serve = false;
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG if (!v) { usage(); return 2; } ++i
        if (!strcmp(a, "-m")) { NEED_ARG; model = v; }
        else if (!strcmp(a, "-t")) { NEED_ARG; threads = atoi(v); }
        else if (!strcmp(a, "-n")) { NEED_ARG; n_gen = atoi(v); }
        else if (!strcmp(a, "-r")) { NEED_ARG; reps = atoi(v); }
        else if (!strcmp(a, "-c")) { NEED_ARG; ctx_size = atoi(v); }
        else if (!strcmp(a, "--load-reps")) { NEED_ARG; load_reps = atoi(v); }
        else if (!strcmp(a, "--repeat-penalty")) { NEED_ARG; repeat_penalty = (float)atof(v); }
        else if (!strcmp(a, "--prompt-file")) { NEED_ARG; prompt_file = v; }
        else if (!strcmp(a, "-o")) { NEED_ARG; out_path = v; }
        else if (!strcmp(a, "--show")) { show = true; }
        else if (!strcmp(a, "--serve")) { serve = true; }
        else if (!strcmp(a, "-p")) {
            NEED_ARG;
            n_pp = 0;
            char* copy = strdup(v);
            for (char* tok = strtok(copy, ","); tok && n_pp < MAX_PP; tok = strtok(NULL, ",")) {
                int x = atoi(tok);
                if (x > 0) pp_sizes[n_pp++] = x;
            }
            free(copy);
        } else { usage(); return 2; }
#undef NEED_ARG
    }
    if (!model) { usage(); return 2; }
    if (reps < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    if (load_reps < 0) load_reps = 0;
    if (load_reps > MAX_REPS) load_reps = MAX_REPS;
    if (threads <= 0) threads = 2;
    char* gen_prompt = prompt_file ? read_file(prompt_file) : strdup(k_default_prompt);
    if (!gen_prompt) {
        fprintf(stderr, "cannot read %s\n", prompt_file);
        return 2;
    }

    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.load_mode = LLAMA_LOAD_MODE_MMAP;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)ctx_size;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.n_seq_max = 1;
    cp.no_perf = true;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;

    double load_ms[MAX_REPS];
    struct llama_model* mdl = NULL;
    struct llama_context* ctx = NULL;
    for (int i = -1; i < load_reps; ++i) {  /* -1: the unmeasured warm-up load */
        if (ctx) llama_free(ctx);
        if (mdl) llama_model_free(mdl);
        double t0 = now_ms();
        mdl = llama_model_load_from_file(model, mp);
        ctx = mdl ? llama_init_from_model(mdl, cp) : NULL;
        if (i >= 0) load_ms[i] = now_ms() - t0;
        if (!ctx) {
            fprintf(stderr, "cannot load %s\n", model);
            return 1;
        }
    }
    const struct llama_vocab* vocab = llama_model_get_vocab(mdl);

    run_stats st;
    if (run(ctx, vocab, gen_prompt, 8, repeat_penalty, &st)) return 1; /* warm-up */

    if (serve) { /* paired mode: as ev_bench_c --serve */
        printf("{\"ready\": true}\n");
        fflush(stdout);
        char line[64];
        while (fgets(line, sizeof line, stdin) && strncmp(line, "generate", 8) == 0) {
            double t0 = now_ms();
            if (run(ctx, vocab, gen_prompt, n_gen, repeat_penalty, &st)) return 1;
            double wall = now_ms() - t0;
            printf("{\"tokens\": %d, \"decode_tok_s\": %.4f, \"e2e_tok_s\": %.4f, \"first_token_ms\": %.4f}\n",
                   st.generated,
                   (st.generated > 1 && st.generation_ms > 0) ? (st.generated - 1) * 1e3 / st.generation_ms : 0.0,
                   wall > 0 ? st.generated * 1e3 / wall : 0.0, st.first_token_ms);
            fflush(stdout);
        }
        llama_free(ctx);
        llama_model_free(mdl);
        llama_backend_free();
        free(gen_prompt);
        return 0;
    }

    double pp_tps[MAX_PP][MAX_REPS];
    int pp_got[MAX_PP];
    for (int k = 0; k < n_pp; ++k) {
        char* text = prompt_of_tokens(vocab, pp_sizes[k], &pp_got[k]);
        for (int r = 0; r < reps; ++r) {
            if (run(ctx, vocab, text, 0, repeat_penalty, &st)) return 1;
            pp_tps[k][r] = st.prompt_ms > 0 ? st.prompt_tokens * 1e3 / st.prompt_ms : 0;
        }
        free(text);
    }

    double tg_tps[MAX_REPS], e2e_tps[MAX_REPS], first_ms[MAX_REPS], wall_ms[MAX_REPS];
    int gen_tokens[MAX_REPS];
    int prompt_tokens = 0;
    free(tokenize(vocab, gen_prompt, true, &prompt_tokens));
    for (int r = 0; r < reps; ++r) {
        if (show && r == reps - 1) {
            g_text = calloc(1, 1);
            g_len = 0;
        }
        double t0 = now_ms();
        if (run(ctx, vocab, gen_prompt, n_gen, repeat_penalty, &st)) return 1;
        wall_ms[r] = now_ms() - t0;
        gen_tokens[r] = st.generated;
        tg_tps[r] = (st.generated > 1 && st.generation_ms > 0) ? (st.generated - 1) * 1e3 / st.generation_ms : 0;
        e2e_tps[r] = wall_ms[r] > 0 ? st.generated * 1e3 / wall_ms[r] : 0;
        first_ms[r] = st.first_token_ms;
    }

    if (g_text) {
        fprintf(stderr, "%s\n", g_text);
        free(g_text);
        g_text = NULL;
    }
    FILE* out = stdout;
    if (out_path && !(out = fopen(out_path, "w"))) {
        fprintf(stderr, "cannot write %s\n", out_path);
        return 1;
    }
    fprintf(out, "{\"tool\": \"llama_ref\", \"threads\": %d, \"context_size\": %d, \"repeat_penalty\": %.3f,\n",
            threads, ctx_size, repeat_penalty);
    fprintf(out, " \"load_ms\": ");
    print_array(out, load_ms, load_reps);
    fprintf(out, ",\n \"pp\": [");
    for (int k = 0; k < n_pp; ++k) {
        fprintf(out, "%s{\"n_prompt\": %d, \"tokens\": %d, \"tok_s\": ", k ? ", " : "", pp_sizes[k], pp_got[k]);
        print_array(out, pp_tps[k], reps);
        fputc('}', out);
    }
    fprintf(out, "],\n \"tg\": {\"n_gen\": %d, \"prompt_tokens\": %d, \"generated\": ", n_gen, prompt_tokens);
    print_int_array(out, gen_tokens, reps);
    fprintf(out, ", \"decode_tok_s\": ");
    print_array(out, tg_tps, reps);
    fprintf(out, ", \"e2e_tok_s\": ");
    print_array(out, e2e_tps, reps);
    fprintf(out, ", \"first_token_ms\": ");
    print_array(out, first_ms, reps);
    fprintf(out, ", \"wall_ms\": ");
    print_array(out, wall_ms, reps);
    fprintf(out, "}}\n");
    if (out != stdout) fclose(out);
    llama_free(ctx);
    llama_model_free(mdl);
    llama_backend_free();
    free(gen_prompt);
    return 0;
}

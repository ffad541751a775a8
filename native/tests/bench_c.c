/* ev_bench_c: the binding's speed floor. A plain C loop over the public API
 * of the static core (edge_veda.h), no Python: load, tokenize, ev_generate
 * greedy for N tokens, and the core's own timings from
 * ev_get_last_generation_stats() next to the wall clock. Prints one JSON
 * object (benchmarks/compare.py reads it).
 *
 *   ev_bench_c -m MODEL [-t THREADS] [-p 128,512] [-n 128] [-r 5] [-c 2048]
 *              [--load-reps 3] [--repeat-penalty 1.0] [--prompt-file FILE]
 *              [-o OUT.json] [--show] [--serve]
 *
 * pp: a prompt of exactly N tokens (built from FILE's text, or a built-in
 *     one), max_tokens 0, prompt cache off: N / prompt_ms.
 * tg: the prompt of FILE (or built-in), N tokens greedy, prompt cache off:
 *     decode tok/s = (generated - 1) / generation_ms (the first token is
 *     sampled from the prompt's logits; every later one costs one decode),
 *     end to end = generated / wall, first token = stats.first_token_ms.
 * load: ev_init + ev_free, warm page cache (one unmeasured load first).
 * --serve: paired mode (benchmarks/compare.py --paired): load and warm up,
 *     print {"ready": true}, then for each line "generate" on stdin run one
 *     tg generation and print its sample as one JSON line; "quit" or EOF ends.
 */
#include "edge_veda.h"

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

/* Filler for prompts of a given token count. */
static const char* k_filler =
    "In the morning the market opened early, and the traders compared the prices of grain, wool, "
    "salt and timber with those of the week before. A river ran beside the square; boats came down "
    "from the hills with apples, cheese and cut stone, and went back up with cloth and iron tools. ";

static char* read_file(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static int count_tokens(ev_context ctx, const char* text) {
    int32_t* toks = NULL;
    int n = 0;
    if (ev_tokenize(ctx, text, true, true, &toks, &n) != EV_SUCCESS) return -1;
    ev_free_tokens(toks);
    return n;
}

/* A text that tokenizes (as ev_generate does) to exactly n tokens, or the
 * closest found; *got receives its count. Caller frees. */
static char* prompt_of_tokens(ev_context ctx, int n, int* got) {
    size_t cap = strlen(k_filler) * (size_t)(n / 20 + 2) + 1;
    char* base = malloc(cap);
    base[0] = '\0';
    while (strlen(base) + strlen(k_filler) < cap) strcat(base, k_filler);
    int32_t* toks = NULL;
    int nt = 0;
    if (ev_tokenize(ctx, base, false, true, &toks, &nt) != EV_SUCCESS) {
        free(base);
        return NULL;
    }
    free(base);
    char* best = NULL;
    int best_n = -1;
    /* BOS (if the model adds one) counts: try cuts around n. */
    for (int d = 0; d < 16; ++d) {
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            int k = n + sgn * d;
            if (k <= 0 || k > nt) continue;
            char* text = NULL;
            if (ev_detokenize(ctx, toks, k, false, &text) != EV_SUCCESS) continue;
            int c = count_tokens(ctx, text);
            if (c == n) {
                free(best);
                ev_free_tokens(toks);
                *got = c;
                return text;
            }
            if (best == NULL || abs(c - n) < abs(best_n - n)) {
                free(best);
                best = strdup(text);
                best_n = c;
            }
            ev_free_string(text);
        }
    }
    ev_free_tokens(toks);
    *got = best_n;
    return best;
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

static void json_string(FILE* out, const char* s) {
    fputc('"', out);
    for (; *s; ++s) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
    fputc('"', out);
}

static void usage(void) {
    fprintf(stderr,
            "usage: ev_bench_c -m MODEL [-t THREADS] [-p 128,512] [-n 128] [-r 5] [-c 2048]\n"
            "                  [--load-reps 3] [--repeat-penalty 1.0] [--prompt-file FILE] [-o OUT] [--show]\n"
            "                  [--serve]\n");
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

    char* gen_prompt = prompt_file ? read_file(prompt_file) : strdup(k_default_prompt);
    if (!gen_prompt) {
        fprintf(stderr, "cannot read %s\n", prompt_file);
        return 2;
    }
    ev_set_verbose(false);
    ev_config cfg;
    ev_config_default(&cfg);
    cfg.model_path = model;
    cfg.backend = EV_BACKEND_CPU;
    cfg.num_threads = threads;
    cfg.context_size = ctx_size;

    /* load: one warm-up, then load_reps measured */
    double load_ms[MAX_REPS];
    ev_error_t err = EV_SUCCESS;
    ev_context ctx = ev_init(&cfg, &err);
    if (!ctx) {
        fprintf(stderr, "ev_init failed (%d): %s\n", err, ev_last_error_message());
        return 1;
    }
    for (int i = 0; i < load_reps; ++i) {
        ev_free(ctx);
        double t0 = now_ms();
        ctx = ev_init(&cfg, &err);
        load_ms[i] = now_ms() - t0;
        if (!ctx) {
            fprintf(stderr, "ev_init failed (%d): %s\n", err, ev_last_error_message());
            return 1;
        }
    }
    ev_set_prompt_cache(ctx, false);

    ev_generation_params gp;
    ev_generation_params_default(&gp);
    gp.temperature = 0.0f;
    gp.repeat_penalty = repeat_penalty;

    /* warm-up: a short generation */
    {
        char* out = NULL;
        gp.max_tokens = 8;
        if (ev_generate(ctx, gen_prompt, &gp, &out) != EV_SUCCESS) {
            fprintf(stderr, "ev_generate failed: %s\n", ev_get_last_error(ctx));
            return 1;
        }
        ev_free_string(out);
    }

    if (serve) {
        gp.max_tokens = n_gen;
        printf("{\"ready\": true}\n");
        fflush(stdout);
        char line[64];
        while (fgets(line, sizeof line, stdin) && strncmp(line, "generate", 8) == 0) {
            char* out = NULL;
            double t0 = now_ms();
            ev_error_t rc = ev_generate(ctx, gen_prompt, &gp, &out);
            double wall = now_ms() - t0;
            ev_free_string(out);
            if (rc != EV_SUCCESS) {
                fprintf(stderr, "ev_generate failed: %s\n", ev_get_last_error(ctx));
                return 1;
            }
            ev_generation_stats st;
            ev_get_last_generation_stats(ctx, &st);
            printf("{\"tokens\": %d, \"decode_tok_s\": %.4f, \"e2e_tok_s\": %.4f, \"first_token_ms\": %.4f}\n",
                   st.generated_tokens,
                   (st.generated_tokens > 1 && st.generation_ms > 0) ? (st.generated_tokens - 1) * 1e3 / st.generation_ms
                                                                     : 0.0,
                   wall > 0 ? st.generated_tokens * 1e3 / wall : 0.0, st.first_token_ms);
            fflush(stdout);
        }
        ev_free(ctx);
        free(gen_prompt);
        return 0;
    }

    /* prompt processing */
    double pp_tps[MAX_PP][MAX_REPS];
    int pp_got[MAX_PP];
    for (int k = 0; k < n_pp; ++k) {
        char* text = prompt_of_tokens(ctx, pp_sizes[k], &pp_got[k]);
        if (!text) {
            fprintf(stderr, "cannot build a prompt of %d tokens\n", pp_sizes[k]);
            return 1;
        }
        gp.max_tokens = 0;
        for (int r = 0; r < reps; ++r) {
            char* out = NULL;
            if (ev_generate(ctx, text, &gp, &out) != EV_SUCCESS) {
                fprintf(stderr, "ev_generate (pp) failed: %s\n", ev_get_last_error(ctx));
                return 1;
            }
            ev_free_string(out);
            ev_generation_stats st;
            ev_get_last_generation_stats(ctx, &st);
            pp_tps[k][r] = st.prompt_ms > 0 ? st.prompt_tokens * 1e3 / st.prompt_ms : 0;
        }
        free(text);
    }

    /* generation */
    double tg_tps[MAX_REPS], e2e_tps[MAX_REPS], first_ms[MAX_REPS], wall_ms[MAX_REPS];
    int gen_tokens[MAX_REPS];
    int prompt_tokens = count_tokens(ctx, gen_prompt);
    gp.max_tokens = n_gen;
    for (int r = 0; r < reps; ++r) {
        char* out = NULL;
        double t0 = now_ms();
        ev_error_t rc = ev_generate(ctx, gen_prompt, &gp, &out);
        wall_ms[r] = now_ms() - t0;
        if (rc != EV_SUCCESS) {
            fprintf(stderr, "ev_generate failed: %s\n", ev_get_last_error(ctx));
            return 1;
        }
        if (show && r == reps - 1) fprintf(stderr, "%s\n", out); /* the text, to compare tools */
        ev_free_string(out);
        ev_generation_stats st;
        ev_get_last_generation_stats(ctx, &st);
        gen_tokens[r] = st.generated_tokens;
        tg_tps[r] = (st.generated_tokens > 1 && st.generation_ms > 0)
                        ? (st.generated_tokens - 1) * 1e3 / st.generation_ms : 0;
        e2e_tps[r] = wall_ms[r] > 0 ? st.generated_tokens * 1e3 / wall_ms[r] : 0;
        first_ms[r] = st.first_token_ms;
    }

    FILE* out = stdout;
    if (out_path && !(out = fopen(out_path, "w"))) {
        fprintf(stderr, "cannot write %s\n", out_path);
        return 1;
    }
    ev_model_info info;
    ev_get_model_info(ctx, &info);
    fprintf(out, "{\"tool\": \"ev_bench_c\", \"api_version\": ");
    json_string(out, ev_version());
    fprintf(out, ", \"llama\": ");
    json_string(out, ev_llama_version());
    fprintf(out, ", \"model\": ");
    json_string(out, model);
    fprintf(out, ", \"model_name\": ");
    json_string(out, info.name ? info.name : "");
    fprintf(out, ", \"threads\": %d, \"context_size\": %d, \"repeat_penalty\": %.3f,\n", threads,
            ctx_size, repeat_penalty);
    fprintf(out, " \"load_ms\": ");
    print_array(out, load_ms, load_reps);
    fprintf(out, ",\n \"pp\": [");
    for (int k = 0; k < n_pp; ++k) {
        fprintf(out, "%s{\"n_prompt\": %d, \"tokens\": %d, \"tok_s\": ", k ? ", " : "", pp_sizes[k],
                pp_got[k]);
        print_array(out, pp_tps[k], reps);
        fputc('}', out);
    }
    fprintf(out, "],\n \"tg\": {\"n_gen\": %d, \"prompt_tokens\": %d, \"generated\": ", n_gen,
            prompt_tokens);
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
    ev_free(ctx);
    free(gen_prompt);
    return 0;
}

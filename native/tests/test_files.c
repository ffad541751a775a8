/* ev_init on bad input: NULLs, empty/missing paths, a directory, files that
 * are not GGUF or are truncated/corrupt (written here from the real model,
 * EV_TEST_MODEL), bad config values, and the memory limit checked before
 * anything is allocated. Every failure returns its documented code and a
 * message naming the problem (the path, for file problems). Exit 77 without
 * EV_TEST_MODEL. */
#define _GNU_SOURCE
#include "edge_veda.h"
#include "ev_test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char* g_path;
static char g_dir[256];

static ev_config base_config(const char* path) {
    ev_config c;
    ev_config_default(&c);
    c.model_path = path;
    c.context_size = 256;
    c.backend = EV_BACKEND_CPU;
    c.num_threads = 1;
    return c;
}

/* ev_init must fail with `want`, and the message must contain `needle`
 * (and the path, for file problems). */
static void expect_init_fail(const char* label, const ev_config* c, ev_error_t want, const char* needle,
                             bool names_path) {
    ev_error_t err = EV_SUCCESS;
    ev_context ctx = ev_init(c, &err);
    const char* msg = ev_last_error_message();
    printf("  %-28s -> %d \"%s\"\n", label, err, msg);
    CHECK_MSG(ctx == NULL, "%s: ev_init succeeded", label);
    if (ctx) ev_free(ctx);
    CHECK_ERR(err, want, msg, needle);
    if (names_path && c && c->model_path) {
        CHECK_MSG(strstr(msg, c->model_path) != NULL, "%s: message does not give the path", label);
    }
    /* ev_get_last_error(NULL) is the same thread-local message */
    CHECK(strcmp(ev_get_last_error(NULL), msg) == 0);
    /* a NULL error pointer is allowed */
    CHECK(ev_init(c, NULL) == NULL);
}

/* Write `n` bytes of the model (n = 0: all), with `patch` (if any) copied at `at`. */
static char* write_variant(const char* name, size_t n, size_t at, const void* patch, size_t patch_len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE* in = fopen(g_path, "rb");
    FILE* out = fopen(path, "wb");
    CHECK(in != NULL && out != NULL);
    if (!in || !out) {
        if (in) fclose(in);
        if (out) fclose(out);
        return path;
    }
    static char buf[1 << 16];
    size_t done = 0, r;
    while ((n == 0 || done < n) && (r = fread(buf, 1, n == 0 || n - done > sizeof buf ? sizeof buf : n - done, in)) > 0) {
        if (patch && at < done + r && at + patch_len > done) {
            for (size_t k = 0; k < patch_len; ++k) {
                if (at + k >= done && at + k < done + r) buf[at + k - done] = ((const char*)patch)[k];
            }
        }
        fwrite(buf, 1, r, out);
        done += r;
    }
    fclose(in);
    fclose(out);
    return path;
}

static void test_files(void) {
    ev_section("bad model files");
    struct stat st;
    CHECK(stat(g_path, &st) == 0);
    size_t size = (size_t)st.st_size;
    ev_config c = base_config(g_path);

    c.model_path = "/nonexistent/dir/model.gguf";
    expect_init_fail("missing file", &c, EV_ERROR_MODEL_LOAD_FAILED, "/nonexistent/dir/model.gguf", true);
    c.model_path = g_dir;
    expect_init_fail("a directory", &c, EV_ERROR_MODEL_LOAD_FAILED, "directory", true);

    char path[512];
    snprintf(path, sizeof path, "%s/notgguf.gguf", g_dir);
    FILE* f = fopen(path, "wb");
    fputs("This is a text file, not a GGUF model. It is long enough to hold a header.\n", f);
    fclose(f);
    c.model_path = path;
    expect_init_fail("a text file", &c, EV_ERROR_MODEL_LOAD_FAILED, "GGUF", true);

    snprintf(path, sizeof path, "%s/empty.gguf", g_dir);
    fclose(fopen(path, "wb"));
    c.model_path = path;
    expect_init_fail("an empty file", &c, EV_ERROR_MODEL_LOAD_FAILED, NULL, true);

    c.model_path = write_variant("first100.gguf", 100, 0, NULL, 0);
    expect_init_fail("first 100 bytes", &c, EV_ERROR_MODEL_LOAD_FAILED, NULL, true);

    /* one full copy, patched in place (and restored) for each kind of damage */
    char* copy = write_variant("copy.gguf", 0, 0, NULL, 0);
    char copy_path[512];
    snprintf(copy_path, sizeof copy_path, "%s", copy);
    c.model_path = copy_path;
    struct {
        const char* label;
        size_t at;
        uint64_t value;
        size_t len;
        const char* needle;
    } damage[] = {
        {"bad magic", 0, 0x58554747 /* "GGUX" */, 4, "magic"},
        {"unknown GGUF version", 4, 99, 4, "version"},
        {"absurd tensor count", 8, 0x7FFFFFFFFFFFULL, 8, NULL},
        {"absurd KV count", 16, 0x7FFFFFFFFFFFULL, 8, NULL},
        {"key length past EOF", 24, (uint64_t)size * 2, 8, NULL},
    };
    for (size_t i = 0; i < sizeof damage / sizeof *damage; ++i) {
        unsigned char saved[8];
        FILE* fp = fopen(copy_path, "r+b");
        CHECK(fp != NULL);
        if (!fp) break;
        fseek(fp, (long)damage[i].at, SEEK_SET);
        CHECK(fread(saved, 1, damage[i].len, fp) == damage[i].len);
        fseek(fp, (long)damage[i].at, SEEK_SET);
        fwrite(&damage[i].value, 1, damage[i].len, fp); /* little-endian, as GGUF */
        fclose(fp);
        expect_init_fail(damage[i].label, &c, EV_ERROR_MODEL_LOAD_FAILED, damage[i].needle, true);
        fp = fopen(copy_path, "r+b");
        fseek(fp, (long)damage[i].at, SEEK_SET);
        fwrite(saved, 1, damage[i].len, fp);
        fclose(fp);
    }
    /* restored: it loads (so the failures above were the damage) */
    ev_error_t err0;
    ev_context c0 = ev_init(&c, &err0);
    CHECK(c0 != NULL);
    ev_free(c0);

    /* tensor data cut off: all but the last 1 MiB, then only the first half */
    CHECK(truncate(copy_path, (off_t)(size - (1 << 20))) == 0);
    expect_init_fail("last MiB missing", &c, EV_ERROR_MODEL_LOAD_FAILED, NULL, true);
    CHECK(truncate(copy_path, (off_t)(size / 2)) == 0);
    expect_init_fail("first half", &c, EV_ERROR_MODEL_LOAD_FAILED, NULL, true);

    /* the real file still loads after all of that */
    c = base_config(g_path);
    ev_error_t err;
    ev_context ctx = ev_init(&c, &err);
    CHECK(ctx != NULL && err == EV_SUCCESS);
    CHECK(ev_last_error_message()[0] == '\0'); /* a success clears the thread's error */
    ev_free(ctx);
}

static void test_configs(void) {
    ev_section("bad configs");
    ev_config c = base_config(g_path);
    expect_init_fail("NULL config", NULL, EV_ERROR_INVALID_PARAM, "config", false);
    c.model_path = NULL;
    expect_init_fail("NULL model_path", &c, EV_ERROR_INVALID_PARAM, "model_path", false);
    c.model_path = "";
    expect_init_fail("empty model_path", &c, EV_ERROR_INVALID_PARAM, "model_path", false);

    c = base_config(g_path);
    c.context_size = -1;
    expect_init_fail("context_size -1", &c, EV_ERROR_INVALID_PARAM, "context_size", false);
    c.context_size = 8193;
    expect_init_fail("context_size 8193 (> 8192)", &c, EV_ERROR_INVALID_PARAM, "8192", false);
    c.context_size = 1 << 30;
    expect_init_fail("context_size 2^30", &c, EV_ERROR_INVALID_PARAM, "context_size", false);
    c = base_config(g_path);
    c.batch_size = 0;
    expect_init_fail("batch_size 0", &c, EV_ERROR_INVALID_PARAM, "batch_size", false);
    c.batch_size = -3;
    expect_init_fail("batch_size -3", &c, EV_ERROR_INVALID_PARAM, "batch_size", false);
    c = base_config(g_path);
    c.num_threads = -1;
    expect_init_fail("num_threads -1", &c, EV_ERROR_INVALID_PARAM, "num_threads", false);
    c = base_config(g_path);
    c.backend = (ev_backend_t)99;
    expect_init_fail("backend 99", &c, EV_ERROR_INVALID_PARAM, "backend", false);
    c.backend = (ev_backend_t)-1;
    expect_init_fail("backend -1", &c, EV_ERROR_INVALID_PARAM, "backend", false);
    c = base_config(g_path);
    c.reserved = &c;
    expect_init_fail("reserved != NULL", &c, EV_ERROR_INVALID_PARAM, "reserved", false);
    c = base_config(g_path);
    c.kv_cache_type_k = 1000;
    expect_init_fail("kv_cache_type_k 1000", &c, EV_ERROR_INVALID_PARAM, "kv_cache_type", false);
    c = base_config(g_path);
    c.gpu_layers = -2;
    expect_init_fail("gpu_layers -2", &c, EV_ERROR_INVALID_PARAM, "gpu_layers", false);
#if !defined(__APPLE__)
    c = base_config(g_path);
    c.backend = EV_BACKEND_METAL;
    expect_init_fail("Metal on this OS", &c, EV_ERROR_UNSUPPORTED_BACKEND, "Metal", false);
#endif
    if (!ev_is_backend_available(EV_BACKEND_VULKAN)) {
        c = base_config(g_path);
        c.backend = EV_BACKEND_VULKAN;
        expect_init_fail("Vulkan unavailable", &c, EV_ERROR_UNSUPPORTED_BACKEND, "Vulkan", false);
    }

    /* the boundaries that are allowed */
    c = base_config(g_path);
    c.context_size = 0; /* the model's own: 8192 for SmolLM2 */
    ev_error_t err;
    ev_context ctx = ev_init(&c, &err);
    CHECK(ctx != NULL);
    if (ctx) {
        ev_model_info mi;
        CHECK(ev_get_model_info(ctx, &mi) == EV_SUCCESS && mi.context_length == 8192);
        ev_free(ctx);
    }
    c = base_config(g_path);
    c.num_threads = 0; /* auto */
    c.batch_size = 1;
    c.backend = EV_BACKEND_AUTO;
    ctx = ev_init(&c, &err);
    CHECK(ctx != NULL);
    if (ctx) {
        ev_generation_params p = ev_test_greedy(2);
        char* out = ev_test_generate(ctx, "Hello world", &p); /* batch 1: one token per decode */
        ev_free_string(out);
        ev_free(ctx);
    }
}

/* ---- load progress ---- */
typedef struct {
    int calls;
    float last;
    bool monotonic;
    int abort_after; /* return false on this call (0: never) */
} progress_t;

static bool on_progress(float p, void* ud) {
    progress_t* pr = ud;
    if (pr->calls > 0 && p < pr->last) pr->monotonic = false;
    pr->last = p;
    ++pr->calls;
    return !(pr->abort_after > 0 && pr->calls >= pr->abort_after);
}

static void test_memory_limit_and_progress(void) {
    ev_section("memory limit before allocation; load progress");
    ev_config c = base_config(g_path);
    ev_error_t err;
    progress_t pr = {0, 0, true, 0};
    ev_context ctx = ev_init_with_progress(&c, on_progress, &pr, &err);
    CHECK(ctx != NULL);
    if (!ctx) return;
    printf("  progress: %d calls, last %.2f\n", pr.calls, pr.last);
    CHECK(pr.calls >= 2 && pr.monotonic && pr.last == 1.0f);
    ev_memory_stats ms;
    CHECK(ev_get_memory_usage(ctx, &ms) == EV_SUCCESS);
    size_t need = ms.current_bytes;
    printf("  model %zu + context %zu = %zu bytes\n", ms.model_bytes, ms.context_bytes, ms.current_bytes);
    ev_free(ctx);

    /* below the model's size: refused before the weights are loaded (the
     * progress callback, which runs while tensors load, is never called) */
    c.memory_limit_bytes = ms.model_bytes / 2;
    pr = (progress_t){0, 0, true, 0};
    ctx = ev_init_with_progress(&c, on_progress, &pr, &err);
    printf("  limit %zu -> %d \"%s\"\n", c.memory_limit_bytes, err, ev_last_error_message());
    CHECK(ctx == NULL);
    CHECK_ERR(err, EV_ERROR_MEMORY_LIMIT_EXCEEDED, ev_last_error_message(), "memory_limit_bytes");
    CHECK(strstr(ev_last_error_message(), g_path) != NULL);
    CHECK(pr.calls == 0);

    /* model fits, model + context does not: the limit covers the context too */
    c.memory_limit_bytes = need - 1;
    pr = (progress_t){0, 0, true, 0};
    ctx = ev_init_with_progress(&c, on_progress, &pr, &err);
    CHECK(ctx == NULL);
    CHECK_ERR(err, EV_ERROR_MEMORY_LIMIT_EXCEEDED, ev_last_error_message(), "needs");
    CHECK(pr.calls == 0);
    if (ctx) ev_free(ctx);

    /* exactly what it needs: loads, and the accounting agrees with the check */
    c.memory_limit_bytes = need;
    ctx = ev_init(&c, &err);
    CHECK_MSG(ctx != NULL, "limit == need (%zu) refused: %s", need, ev_last_error_message());
    if (ctx) {
        CHECK(ev_get_memory_usage(ctx, &ms) == EV_SUCCESS);
        CHECK(ms.limit_bytes == need && ms.current_bytes == need);
        ev_free(ctx);
    }

    /* the progress callback can abort a load */
    c.memory_limit_bytes = 0;
    pr = (progress_t){0, 0, true, 1};
    ctx = ev_init_with_progress(&c, on_progress, &pr, &err);
    CHECK(ctx == NULL);
    CHECK_ERR(err, EV_ERROR_MODEL_LOAD_FAILED, ev_last_error_message(), "cancelled");
    if (ctx) ev_free(ctx);
    /* and a load after an aborted one works */
    ctx = ev_init(&c, &err);
    CHECK(ctx != NULL);
    ev_free(ctx);
}

static void remove_dir(void) {
    const char* names[] = {"notgguf.gguf", "empty.gguf", "first100.gguf", "copy.gguf"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; ++i) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
}

int main(void) {
    g_path = ev_test_model_or_skip("model_files");
    ev_set_verbose(false);
    double t0 = ev_now_ms();
    const char* tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/ev_test_files_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_files();
    test_configs();
    test_memory_limit_and_progress();
    remove_dir();
    printf("model_files: %.1f s\n", (ev_now_ms() - t0) / 1000.0);
    return ev_test_summary("model_files");
}

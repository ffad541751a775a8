// Embeddings: a second llama.cpp context on the same model, created on first
// use, mean pooling, non-causal attention, L2-normalized output.
#include "ev_internal.h"
#include "guard.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

using ev::Engine;

namespace {
constexpr uint32_t kEmbedCtx = 512;
}

extern "C" {

// Context lock held, model loaded (with_engine, kLocked).
static ev_error_t ev_embed_impl(Engine* e, const char* text, ev_embed_result* result) {
    if (text == nullptr || result == nullptr) {
        e->set_error("ev_embed: text and result must not be NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    memset(result, 0, sizeof *result);
    if (text[0] == '\0') {
        e->set_error("ev_embed: text is empty");
        return EV_ERROR_INVALID_PARAM;
    }
    if (e->embed_ctx == nullptr) {
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = kEmbedCtx;
        cp.n_batch = kEmbedCtx;
        cp.n_ubatch = kEmbedCtx;
        cp.n_seq_max = 1;
        cp.n_threads = e->n_threads;
        cp.n_threads_batch = e->n_threads;
        cp.embeddings = true;
        cp.pooling_type = LLAMA_POOLING_TYPE_MEAN;
        cp.no_perf = true;
        ev::LogCapture capture;
        e->embed_ctx = llama_init_from_model(e->model, cp);
        if (e->embed_ctx == nullptr) {
            std::string said = capture.text();
            bool oom = ev::looks_like_alloc_failure(said);
            e->set_error(std::string(oom ? "out of memory: " : "") + "cannot create the embedding context" +
                         (said.empty() ? "" : ": llama.cpp said: " + said));
            return oom ? EV_ERROR_OUT_OF_MEMORY : EV_ERROR_BACKEND_INIT_FAILED;
        }
        llama_set_causal_attn(e->embed_ctx, false);
    }
    int len = static_cast<int>(strlen(text));
    std::vector<llama_token> toks(len + 8);
    int n = llama_tokenize(e->vocab, text, len, toks.data(), (int)toks.size(), llama_vocab_get_add_bos(e->vocab), true);
    if (n < 0) {
        e->set_error("ev_embed: text is too long (more than " + std::to_string(kEmbedCtx) + " tokens)");
        return EV_ERROR_INVALID_PARAM;
    }
    if (n > static_cast<int>(kEmbedCtx)) {
        e->set_error("ev_embed: text has " + std::to_string(n) + " tokens; at most " + std::to_string(kEmbedCtx));
        return EV_ERROR_INVALID_PARAM;
    }
    if (n == 0) {
        e->set_error("ev_embed: text has no tokens");
        return EV_ERROR_INVALID_PARAM;
    }
    llama_memory_clear(llama_get_memory(e->embed_ctx), true);
    std::string no_room;
    if (ev::check_worker_threads(e->n_threads, &no_room) != EV_SUCCESS) {
        e->set_error(no_room);
        return EV_ERROR_OUT_OF_MEMORY;
    }
    int rc = llama_decode(e->embed_ctx, llama_batch_get_one(toks.data(), n));
    if (rc != 0) {
        e->set_error("llama_decode failed computing the embedding (code " + std::to_string(rc) + ")");
        return EV_ERROR_INFERENCE_FAILED;
    }
    ev::worker_threads_started(e->n_threads);
    const float* v = llama_get_embeddings_seq(e->embed_ctx, 0);
    if (v == nullptr) v = llama_get_embeddings_ith(e->embed_ctx, -1);
    if (v == nullptr) {
        e->set_error("llama.cpp returned no embedding");
        return EV_ERROR_INFERENCE_FAILED;
    }
    int dims = llama_model_n_embd(e->model);
    auto* out = static_cast<float*>(malloc(sizeof(float) * dims));
    if (!out) {
        e->set_error("out of memory");
        return EV_ERROR_OUT_OF_MEMORY;
    }
    double norm = 0;
    for (int i = 0; i < dims; ++i) norm += double(v[i]) * v[i];
    norm = std::sqrt(norm);
    for (int i = 0; i < dims; ++i) out[i] = norm > 0 ? static_cast<float>(v[i] / norm) : 0.f;
    result->embeddings = out;
    result->dimensions = dims;
    result->token_count = n;
    e->refresh_memory_locked();
    // the embed context may have grown use: checked on the calling thread
    if (e->limit.load() != 0) e->pressure_check_pending.store(true);
    return EV_SUCCESS;
}

static void ev_free_embeddings_impl(ev_embed_result* result) {
    if (result == nullptr) return;
    free(result->embeddings);
    memset(result, 0, sizeof *result);
}

// ---- entry points ----

EV_API ev_error_t ev_embed(ev_context ctx, const char* text, ev_embed_result* result) {
    ev_error_t rc = ev::with_engine_compute("ev_embed", EV_ERROR_INFERENCE_FAILED, ctx, ev::kLocked,
                                            [&](Engine& e) { return ev_embed_impl(&e, text, result); });
    ev::pressure_safe_point(ctx);
    return rc;
}

EV_API void ev_free_embeddings(ev_embed_result* result) {
    ev::guard_quiet("ev_free_embeddings", [&] { ev_free_embeddings_impl(result); });
}

}  // extern "C"

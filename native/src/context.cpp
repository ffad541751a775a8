// A context after ev_init: ev_free, validity, model info, reset and the
// prompt cache switch. (Creating one: init.cpp; memory: memory.cpp.)
#include "ev_internal.h"
#include "guard.h"

#include <cstring>

namespace ev {

void Engine::release_locked() {
    if (embed_ctx) llama_free(embed_ctx);
    if (lctx) llama_free(lctx);
    if (model) llama_model_free(model);
    embed_ctx = nullptr;
    lctx = nullptr;
    model = nullptr;
    vocab = nullptr;
    cached_tokens.clear();
    model_bytes.store(0);
    context_bytes.store(0);
    current.store(0);
}

}  // namespace ev

using ev::Engine;

extern "C" {

static void ev_free_impl(ev_context ctx) {
    if (ctx == nullptr || ctx->magic.load() != ev::kContextMagic) return;
    ctx->magic.store(ev::kDeadMagic);
    if (ctx->inherited()) {
        // A fork()ed child's copy of the parent's context: its locks may be
        // held by threads that do not exist here, and llama.cpp's buffers are
        // the parent's (copy-on-write). Forget it without touching anything:
        // the copy is released when this process exits or execs.
        return;
    }
    std::shared_ptr<Engine> e = std::move(ctx->engine);
    if (e) {
        e->freed.store(true);
        e->cancel_requested.store(true);  // a stream still running stops at once
        {
            std::lock_guard<std::mutex> lock(e->mutex);
            bool had_model = e->model != nullptr || e->unloaded.load();
            e->release_locked();
            if (had_model) ev::backend_release();
        }
        std::lock_guard<std::mutex> lock(e->callback_mutex);
        e->pressure_cb = nullptr;
        e->pressure_ud = nullptr;
    }
    delete ctx;
}

static bool ev_is_valid_impl(ev_context ctx) {
    if (ctx == nullptr || ctx->magic.load() != ev::kContextMagic || !ctx->engine) return false;
    if (ctx->inherited()) return false;
    return !ctx->engine->unloaded.load() && !ctx->engine->freed.load();
}

// The impls below run under the context lock with the model loaded
// (with_engine, kLocked).

static ev_error_t ev_get_model_info_impl(Engine& e, ev_model_info* info) {
    if (info == nullptr) {
        e.set_error("ev_get_model_info: info is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    memset(info, 0, sizeof *info);
    info->name = e.name.c_str();
    info->architecture = e.arch.c_str();
    info->num_parameters = llama_model_n_params(e.model);
    // the configured size (llama.cpp pads n_ctx up to a multiple of 256)
    info->context_length = static_cast<int>(llama_n_ctx(e.lctx));
    if (e.config.context_size > 0 && e.config.context_size < info->context_length) {
        info->context_length = e.config.context_size;
    }
    info->embedding_dim = llama_model_n_embd(e.model);
    info->num_layers = llama_model_n_layer(e.model);
    return EV_SUCCESS;
}

static ev_error_t ev_reset_impl(Engine& e) {
    if (e.active_stream.load() != nullptr) {
        e.set_error("ev_reset: a stream is active; free it first");
        return EV_ERROR_CONTEXT_INVALID;
    }
    if (e.lctx) llama_memory_clear(llama_get_memory(e.lctx), true);
    if (e.embed_ctx) llama_memory_clear(llama_get_memory(e.embed_ctx), true);
    e.cached_tokens.clear();
    e.last_stats = ev_generation_stats{};
    return EV_SUCCESS;
}

static ev_error_t ev_set_prompt_cache_impl(Engine& e, bool enabled) {
    e.prompt_cache = enabled;
    if (!enabled) {
        if (e.lctx) llama_memory_clear(llama_get_memory(e.lctx), true);
        e.cached_tokens.clear();
    }
    return EV_SUCCESS;
}

// ---- entry points ----

EV_API void ev_free(ev_context ctx) {
    ev::guard_quiet("ev_free", [&] { ev_free_impl(ctx); });
}

EV_API bool ev_is_valid(ev_context ctx) {
    return ev::guard_quiet("ev_is_valid", false, [&] { return ev_is_valid_impl(ctx); });
}

EV_API ev_error_t ev_get_model_info(ev_context ctx, ev_model_info* info) {
    return ev::with_engine("ev_get_model_info", EV_ERROR_UNKNOWN, ctx, ev::kLocked,
                           [&](Engine& e) { return ev_get_model_info_impl(e, info); });
}

EV_API ev_error_t ev_reset(ev_context ctx) {
    return ev::with_engine("ev_reset", EV_ERROR_UNKNOWN, ctx, ev::kLocked,
                           [&](Engine& e) { return ev_reset_impl(e); });
}

EV_API ev_error_t ev_set_prompt_cache(ev_context ctx, bool enabled) {
    return ev::with_engine("ev_set_prompt_cache", EV_ERROR_UNKNOWN, ctx, ev::kLocked,
                           [&](Engine& e) { return ev_set_prompt_cache_impl(e, enabled); });
}

}  // extern "C"

// Memory accounting (llama.cpp's own buffer sizes), the memory limit, the
// pressure callback and auto-unload, and ev_memory_cleanup.
#include "ev_internal.h"
#include "guard.h"

#include "llama_memory_rows.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace ev {

std::vector<std::pair<std::string, BufferBytes>> buffer_bytes_by_type(const llama_context* lctx) {
    std::vector<std::pair<std::string, BufferBytes>> rows;
    if (lctx == nullptr) return rows;
    // A context uses a handful of buffer types: one call fills them; a second
    // only if there were more (each call builds llama.cpp's map anew).
    std::vector<ev_llama_memory_row> raw(8);
    size_t n = ev_llama_memory_rows(lctx, raw.data(), raw.size());
    if (n > raw.size()) {
        raw.resize(n);
        n = ev_llama_memory_rows(lctx, raw.data(), raw.size());
    }
    raw.resize(std::min(n, raw.size()));
    for (const auto& r : raw) {
        const char* name = r.buft != nullptr ? ggml_backend_buft_name(r.buft) : nullptr;
        BufferBytes b;
        b.model = r.model;
        b.context = r.context;
        b.compute = r.compute;
        rows.emplace_back(name != nullptr ? name : "unknown", b);
    }
    return rows;
}

BufferBytes buffer_bytes(const llama_context* lctx) {
    BufferBytes b;
    for (const auto& row : buffer_bytes_by_type(lctx)) {
        b.model += row.second.model;
        b.context += row.second.context;
        b.compute += row.second.compute;
    }
    return b;
}

std::string fmt_mib(size_t bytes) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

void Engine::refresh_memory_locked() {
    BufferBytes b = buffer_bytes(lctx);
    BufferBytes eb = buffer_bytes(embed_ctx);
    size_t m = b.model;
    size_t c = b.context + b.compute + eb.context + eb.compute;
    model_bytes.store(m);
    context_bytes.store(c);
    current.store(m + c);
    size_t p = peak.load();
    while (m + c > p && !peak.compare_exchange_weak(p, m + c)) {
    }
}

void Engine::check_pressure() {
    pressure_check_pending.store(false);
    size_t lim = limit.load();
    size_t cur = current.load();
    if (lim == 0 || unloaded.load() || freed.load()) return;
    if (static_cast<double>(cur) >= 0.9 * static_cast<double>(lim)) {
        ev_memory_pressure_callback cb;
        void* ud;
        {
            std::lock_guard<std::mutex> lock(callback_mutex);
            cb = pressure_cb;
            ud = pressure_ud;
        }
        if (cb) cb(ud, cur, lim);  // no lock of ours held
    }
    if (config.auto_unload_on_memory_pressure && limit.load() != 0 && current.load() > limit.load()) {
        if (active_stream.load() != nullptr) {
            pressure_check_pending.store(true);  // unload when the stream ends
            return;
        }
        std::unique_lock<std::mutex> lock(mutex, std::try_to_lock);
        if (!lock.owns_lock()) {
            pressure_check_pending.store(true);  // the worker will retry at its safe point
            return;
        }
        if (freed.load() || unloaded.load()) return;
        release_locked();
        unloaded.store(true);
        set_error("the model was unloaded: memory use exceeded the limit of " + fmt_mib(limit.load()));
    }
}

void pressure_safe_point(Engine* e) noexcept {
    if (e == nullptr || !e->pressure_check_pending.load() || e->freed.load()) return;
    guard_quiet("memory pressure check", [e] { e->check_pressure(); });
}

void pressure_safe_point(ev_context ctx) noexcept {
    if (ctx == nullptr || ctx->magic.load() != kContextMagic || !ctx->engine || ctx->inherited()) return;
    pressure_safe_point(ctx->engine.get());
}

}  // namespace ev

using ev::Engine;

extern "C" {

// No lock (with_engine, kUnlocked): the counts are atomics, so stats never
// wait for a generation.
static ev_error_t ev_get_memory_usage_impl(Engine& e, ev_memory_stats* stats) {
    if (stats == nullptr) {
        e.set_error("ev_get_memory_usage: stats is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    memset(stats, 0, sizeof *stats);
    stats->current_bytes = e.current.load();
    stats->peak_bytes = e.peak.load();
    stats->limit_bytes = e.limit.load();
    stats->model_bytes = e.model_bytes.load();
    stats->context_bytes = e.context_bytes.load();
    return EV_SUCCESS;
}

// No lock (kUnlocked): the pressure check calls the host's callback.
static ev_error_t ev_set_memory_limit_impl(Engine& e, size_t limit_bytes) {
    e.limit.store(limit_bytes);
    if (e.busy.load() || e.active_stream.load() != nullptr) {
        // The generating thread checks at the end of its call (a safe point).
        e.pressure_check_pending.store(true);
    } else {
        e.check_pressure();
    }
    return EV_SUCCESS;
}

// kUnlocked: the callback has its own lock.
static ev_error_t ev_set_memory_pressure_callback_impl(Engine& e, ev_memory_pressure_callback callback,
                                                       void* user_data) {
    std::lock_guard<std::mutex> lock(e.callback_mutex);
    e.pressure_cb = callback;
    e.pressure_ud = callback ? user_data : nullptr;
    return EV_SUCCESS;
}

// Context lock held (kLocked).
static ev_error_t ev_memory_cleanup_impl(Engine& e) {
    if (e.active_stream.load() != nullptr) {
        e.set_error("ev_memory_cleanup: a stream is active; free it first");
        return EV_ERROR_CONTEXT_INVALID;
    }
    if (e.lctx) llama_memory_clear(llama_get_memory(e.lctx), true);
    if (e.embed_ctx) {
        llama_free(e.embed_ctx);
        e.embed_ctx = nullptr;
    }
    e.cached_tokens.clear();
    e.refresh_memory_locked();
    return EV_SUCCESS;
}

// ---- entry points ----

EV_API ev_error_t ev_get_memory_usage(ev_context ctx, ev_memory_stats* stats) {
    return ev::with_engine("ev_get_memory_usage", EV_ERROR_UNKNOWN, ctx, ev::kUnlocked,
                           [&](Engine& e) { return ev_get_memory_usage_impl(e, stats); });
}

EV_API ev_error_t ev_set_memory_limit(ev_context ctx, size_t limit_bytes) {
    return ev::with_engine("ev_set_memory_limit", EV_ERROR_UNKNOWN, ctx, ev::kUnlocked,
                           [&](Engine& e) { return ev_set_memory_limit_impl(e, limit_bytes); });
}

EV_API ev_error_t ev_set_memory_pressure_callback(ev_context ctx, ev_memory_pressure_callback callback,
                                                  void* user_data) {
    return ev::with_engine("ev_set_memory_pressure_callback", EV_ERROR_UNKNOWN, ctx, ev::kUnlocked,
                           [&](Engine& e) { return ev_set_memory_pressure_callback_impl(e, callback, user_data); });
}

EV_API ev_error_t ev_memory_cleanup(ev_context ctx) {
    return ev::with_engine("ev_memory_cleanup", EV_ERROR_UNKNOWN, ctx, ev::kLocked,
                           [&](Engine& e) { return ev_memory_cleanup_impl(e); });
}

}  // extern "C"

// The blocking generation entry points: ev_generate (the Generation loop in
// one call), its cancel and stats, and ev_free_string.
#include "generation.h"
#include "guard.h"

#include <cstdlib>

using ev::Engine;

extern "C" {

static void ev_free_string_impl(char* str) { free(str); }

// Context lock held (with_engine).
static ev_error_t ev_generate_impl(Engine& e, const char* prompt, const ev_generation_params* params,
                                   char** output) {
    // whatever happens below, ev_get_last_logprobs never returns an older call's
    ev::record_thread_logprobs(&e, nullptr);
    if (prompt == nullptr) {
        e.set_error("ev_generate: prompt is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    if (output == nullptr) {
        e.set_error("ev_generate: output is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    ev::Generation gen;
    gen.e = &e;
    ev_error_t code;
    if ((code = ev::read_params(params, &gen.p)) != EV_SUCCESS) {
        e.set_error(ev::thread_error());
        return code;
    }
    if (e.active_stream.load() != nullptr) {
        e.set_error("ev_generate: a stream is active on this context; free it first");
        return EV_ERROR_CONTEXT_INVALID;
    }
    std::string text;
    {
        e.busy.store(true);
        e.cancel_requested.store(false);
        struct Busy {
            Engine& e;
            ~Busy() { e.busy.store(false); }
        } busy{e};
        if ((code = gen.prepare(prompt)) != EV_SUCCESS) return code;
        std::string piece;
        while (!gen.done) {
            if ((code = gen.next(&piece, nullptr)) != EV_SUCCESS) break;
            text += piece;
        }
        ev::record_stats(&e, gen.current_stats());
        ev::record_thread_logprobs(
            &e, gen.lp ? std::make_shared<const ev::LogprobList>(std::move(gen.logprobs)) : nullptr);
        e.refresh_memory_locked();
    }
    if (code != EV_SUCCESS) return code;
    *output = ev::dup_cstr(text);
    if (*output == nullptr) {
        e.set_error("out of memory copying the output");
        return EV_ERROR_OUT_OF_MEMORY;
    }
    return EV_SUCCESS;
}

// No lock: the flag is read by the generation that holds it.
static ev_error_t ev_generate_cancel_impl(Engine& e) {
    if (e.busy.load() || e.active_stream.load() != nullptr) e.cancel_requested.store(true);
    return EV_SUCCESS;
}

// The calling thread's own stats need no lock; the context's last are read
// under it.
static ev_error_t ev_get_last_generation_stats_impl(Engine& e, ev_generation_stats* stats) {
    if (stats == nullptr) {
        e.set_error("stats is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    if (ev::thread_stats(&e, stats)) return EV_SUCCESS;
    std::lock_guard<std::mutex> lock(e.mutex);
    *stats = e.last_stats;
    return EV_SUCCESS;
}

// Thread-local only: no lock.
static ev_error_t ev_get_last_logprobs_impl(Engine& e, ev_logprobs* out) {
    if (out == nullptr) {
        e.set_error("ev_get_last_logprobs: out is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    ev::export_logprobs(ev::thread_logprobs(&e), out);
    return EV_SUCCESS;
}

// ---- entry points ----

EV_API void ev_free_string(char* str) { ev_free_string_impl(str); }  // free(): cannot throw

EV_API ev_error_t ev_generate(ev_context ctx, const char* prompt, const ev_generation_params* params,
                              char** output) {
    if (output != nullptr) *output = nullptr;  // on every failure, the lookup's too
    ev_error_t rc = ev::with_engine_compute("ev_generate", EV_ERROR_INFERENCE_FAILED, ctx, ev::kLocked,
                                            [&](Engine& e) { return ev_generate_impl(e, prompt, params, output); });
    ev::pressure_safe_point(ctx);
    return rc;
}

EV_API ev_error_t ev_generate_cancel(ev_context ctx) {
    return ev::with_engine("ev_generate_cancel", EV_ERROR_UNKNOWN, ctx, ev::kUnlocked,
                           [&](Engine& e) { return ev_generate_cancel_impl(e); });
}

EV_API ev_error_t ev_get_last_generation_stats(ev_context ctx, ev_generation_stats* stats) {
    return ev::with_engine("ev_get_last_generation_stats", EV_ERROR_UNKNOWN, ctx, ev::kUnlocked,
                           [&](Engine& e) { return ev_get_last_generation_stats_impl(e, stats); });
}

EV_API ev_error_t ev_get_last_logprobs(ev_context ctx, ev_logprobs* out) {
    if (out != nullptr) *out = ev_logprobs{};
    return ev::with_engine("ev_get_last_logprobs", EV_ERROR_UNKNOWN, ctx, ev::kUnlocked,
                           [&](Engine& e) { return ev_get_last_logprobs_impl(e, out); });
}

EV_API void ev_free_logprobs(ev_logprobs* logprobs) {
    ev::guard_quiet("ev_free_logprobs", [&] {
        if (logprobs != nullptr) ev::free_logprobs(logprobs);
    });
}

}  // extern "C"

// Streams: a Generation driven one piece per ev_stream_next, the context's
// one stream slot, cancel from any thread, and the stream's own stats.
#include "generation.h"
#include "guard.h"

#include <new>

struct ev_stream_impl {
    std::atomic<uint32_t> magic{ev::kStreamMagic};
    const uint32_t fork_generation = ev::fork_generation();  // the process it belongs to
    std::shared_ptr<ev::Engine> engine;
    std::mutex mutex;  // the stream lock (taken before the context lock)
    std::atomic<bool> cancel{false};
    std::atomic<bool> ended{false};
    // holds the context's one stream slot; written under the stream lock,
    // read without it by ev_stream_next after its call (another thread's
    // ev_stream_next may be deactivating the stream meanwhile)
    std::atomic<bool> active{true};
    ev::Generation gen;
};

using ev::Engine;
using ev::fail;

namespace {

// Drop the stream's claim on its context (once).
void deactivate(ev_stream s) {
    if (!s->active.exchange(false)) return;
    void* expected = s;
    s->engine->active_stream.compare_exchange_strong(expected, nullptr);
}

bool stream_live(ev_stream s) { return s != nullptr && s->magic.load() == ev::kStreamMagic; }
bool stream_inherited(ev_stream s) { return s->fork_generation != ev::fork_generation(); }
bool stream_ok(ev_stream s) { return stream_live(s) && !stream_inherited(s); }

// Why a stream handle cannot be used: stored as this thread's error.
ev_error_t stream_error(ev_stream s) {
    if (stream_live(s)) return fail(EV_ERROR_CONTEXT_INVALID, ev::inherited_handle_message());
    return fail(EV_ERROR_INVALID_PARAM, "stream is NULL or was freed");
}

// A failure on a usable stream: the thread's error and its context's
// (ev_get_last_error(ctx)), as for the calls that take the context.
ev_error_t stream_fail(ev_stream s, ev_error_t code, const std::string& msg) {
    s->engine->set_error(msg);
    return code;
}

// Where a stream entry's exception is recorded: its context too.
ev::ErrorSink stream_sink(ev_stream s) { return stream_ok(s) ? s->engine.get() : nullptr; }

}  // namespace

extern "C" {

// Context lock held (with_engine).
static ev_stream ev_generate_stream_impl(ev_context ctx, Engine& e, const char* prompt,
                                         const ev_generation_params* params, ev_error_t* error) {
    if (prompt == nullptr) {
        e.set_error("ev_generate_stream: prompt is NULL");
        *error = EV_ERROR_INVALID_PARAM;
        return nullptr;
    }
    auto* s = new (std::nothrow) ev_stream_impl();
    if (s == nullptr) {
        e.set_error("out of memory creating the stream");
        *error = EV_ERROR_OUT_OF_MEMORY;
        return nullptr;
    }
    s->engine = ctx->engine;
    s->gen.e = &e;
    if ((*error = ev::read_params(params, &s->gen.p)) != EV_SUCCESS) {
        e.set_error(ev::thread_error());
        s->active = false;
        delete s;
        return nullptr;
    }
    void* expected = nullptr;
    if (!e.active_stream.compare_exchange_strong(expected, s)) {
        e.set_error("another stream is active on this context; free it first (one stream per context)");
        *error = EV_ERROR_CONTEXT_INVALID;
        s->active = false;
        delete s;
        return nullptr;
    }
    e.cancel_requested.store(false);
    if ((*error = s->gen.prepare(prompt)) != EV_SUCCESS) {
        deactivate(s);
        delete s;
        return nullptr;
    }
    *error = EV_SUCCESS;
    return s;
}

static char* ev_stream_next_impl(ev_stream stream, ev_error_t* error) {
    ev_error_t dummy;
    if (error == nullptr) error = &dummy;
    if (!stream_ok(stream)) {
        *error = stream_error(stream);
        return nullptr;
    }
    std::lock_guard<std::mutex> slock(stream->mutex);
    Engine* e = stream->engine.get();
    stream->gen.logprobs.clear();  // ev_stream_get_logprobs: this call's tokens only
    if (stream->ended.load()) {
        *error = stream_fail(stream, EV_ERROR_STREAM_ENDED,
                             stream->cancel.load() ? "the stream was cancelled" : "the stream has ended");
        return nullptr;
    }
    if (stream->cancel.load()) {
        stream->ended.store(true);
        std::lock_guard<std::mutex> lock(e->mutex);
        stream->gen.finish(EV_FINISH_CANCELLED);
        deactivate(stream);
        *error = stream_fail(stream, EV_ERROR_STREAM_ENDED, "the stream was cancelled");
        return nullptr;
    }
    if (e->freed.load() || e->unloaded.load()) {
        stream->ended.store(true);
        *error = stream_fail(stream, EV_ERROR_CONTEXT_INVALID, "the stream's context was freed or its model unloaded");
        return nullptr;
    }
    std::string text;
    ev_error_t code;
    bool finished;
    {
        std::lock_guard<std::mutex> lock(e->mutex);
        if (e->model == nullptr) {
            stream->ended.store(true);
            *error = stream_fail(stream, EV_ERROR_CONTEXT_INVALID, "the stream's context has no model");
            return nullptr;
        }
        code = stream->gen.next(&text, &stream->cancel);
        finished = stream->gen.done;
        if (finished) {
            ev::record_stats(e, stream->gen.current_stats());
            e->refresh_memory_locked();
            deactivate(stream);
        }
    }
    if (code != EV_SUCCESS) {
        stream->ended.store(true);  // the Generation recorded the message on the context
        *error = code;
        return nullptr;
    }
    if (text.empty()) {
        // finished with nothing more to say; a cancel (ev_stream_cancel from
        // another thread during this call, or ev_generate_cancel) ends the
        // stream with STREAM_ENDED, as documented
        stream->ended.store(true);
        if (stream->gen.stats.finish_reason == EV_FINISH_CANCELLED) {
            *error = stream_fail(stream, EV_ERROR_STREAM_ENDED, "the stream was cancelled");
        } else {
            *error = EV_SUCCESS;
        }
        return nullptr;
    }
    // A final piece: the next call returns the end.
    char* out = ev::dup_cstr(text);
    if (out == nullptr) {
        *error = stream_fail(stream, EV_ERROR_OUT_OF_MEMORY, "out of memory copying a piece");
        return nullptr;
    }
    *error = EV_SUCCESS;
    return out;
}

static bool ev_stream_has_next_impl(ev_stream stream) {
    if (!stream_ok(stream)) return false;
    if (stream->ended.load() || stream->cancel.load()) return false;
    // ev_generate_cancel() on the context cancels its active stream too.
    const auto& e = stream->engine;
    return !(e->cancel_requested.load() && e->active_stream.load() == stream);
}

static void ev_stream_cancel_impl(ev_stream stream) {
    if (!stream_ok(stream)) return;
    stream->cancel.store(true);
    // Interrupt a decode in progress through the context's abort flag.
    if (stream->engine->active_stream.load() == stream) stream->engine->cancel_requested.store(true);
}

static void ev_stream_free_impl(ev_stream stream) {
    if (!stream_live(stream)) return;
    if (stream_inherited(stream)) {
        // a fork()ed child's copy of the parent's stream: forget it, touch
        // nothing (see ev_free)
        stream->magic.store(ev::kDeadMagic);
        return;
    }
    {
        std::lock_guard<std::mutex> slock(stream->mutex);
        stream->magic.store(ev::kDeadMagic);
        deactivate(stream);
        stream->ended.store(true);
    }
    std::shared_ptr<Engine> e = stream->engine;
    {
        // The sampler is freed under the context lock: it may reference the vocab.
        std::lock_guard<std::mutex> lock(e->mutex);
        if (stream->gen.smpl) {
            llama_sampler_free(stream->gen.smpl);
            stream->gen.smpl = nullptr;
        }
    }
    delete stream;
    if (e->pressure_check_pending.load() && !e->freed.load()) e->check_pressure();
}

static ev_error_t ev_stream_get_token_info_impl(ev_stream stream, ev_stream_token_info* info) {
    if (!stream_ok(stream)) return stream_error(stream);
    if (info == nullptr) return stream_fail(stream, EV_ERROR_INVALID_PARAM, "info is NULL");
    std::lock_guard<std::mutex> slock(stream->mutex);
    const auto& g = stream->gen;
    info->confidence = g.last_conf;
    info->avg_confidence = g.conf_n > 0 ? static_cast<float>(g.conf_sum / g.conf_n) : -1.f;
    info->needs_cloud_handoff = g.handoff;
    info->token_index = g.n_generated;
    return EV_SUCCESS;
}

static ev_error_t ev_stream_get_stats_impl(ev_stream stream, ev_generation_stats* stats) {
    if (!stream_ok(stream)) return stream_error(stream);
    if (stats == nullptr) return stream_fail(stream, EV_ERROR_INVALID_PARAM, "stats is NULL");
    std::lock_guard<std::mutex> slock(stream->mutex);
    *stats = stream->gen.current_stats();
    return EV_SUCCESS;
}

static ev_error_t ev_stream_get_logprobs_impl(ev_stream stream, ev_logprobs* out) {
    if (!stream_ok(stream)) return stream_error(stream);
    if (out == nullptr) return stream_fail(stream, EV_ERROR_INVALID_PARAM, "out is NULL");
    std::lock_guard<std::mutex> slock(stream->mutex);
    const auto& list = stream->gen.logprobs;
    ev::export_logprobs(list.empty() ? nullptr : std::make_shared<const ev::LogprobList>(list), out);
    return EV_SUCCESS;
}

// ---- entry points ----

EV_API ev_stream ev_generate_stream(ev_context ctx, const char* prompt, const ev_generation_params* params,
                                    ev_error_t* error) {
    return ev::with_engine_out_compute(
        "ev_generate_stream", EV_ERROR_INFERENCE_FAILED, ctx, ev::kLocked, ev_stream{nullptr}, error,
        [&](Engine& e, ev_error_t* code) { return ev_generate_stream_impl(ctx, e, prompt, params, code); });
}

EV_API char* ev_stream_next(ev_stream stream, ev_error_t* error) {
    char* piece = ev::guard_out_compute("ev_stream_next", EV_ERROR_INFERENCE_FAILED, stream_sink(stream),
                                        static_cast<char*>(nullptr), error,
                                        [&] { return ev_stream_next_impl(stream, error); });
    // a limit set during the stream is checked once the stream has let go of
    // its context (while it is active, check_pressure() only re-arms the flag)
    if (stream_ok(stream) && !stream->active) ev::pressure_safe_point(stream->engine.get());
    return piece;
}

EV_API bool ev_stream_has_next(ev_stream stream) {
    return ev::guard_quiet("ev_stream_has_next", false, [&] { return ev_stream_has_next_impl(stream); });
}

EV_API void ev_stream_cancel(ev_stream stream) {
    ev::guard_quiet("ev_stream_cancel", [&] { ev_stream_cancel_impl(stream); });
}

EV_API void ev_stream_free(ev_stream stream) {
    ev::guard_quiet("ev_stream_free", [&] { ev_stream_free_impl(stream); });
}

EV_API ev_error_t ev_stream_get_token_info(ev_stream stream, ev_stream_token_info* info) {
    return ev::guard("ev_stream_get_token_info", EV_ERROR_UNKNOWN, stream_sink(stream),
                     [&] { return ev_stream_get_token_info_impl(stream, info); });
}

EV_API ev_error_t ev_stream_get_stats(ev_stream stream, ev_generation_stats* stats) {
    return ev::guard("ev_stream_get_stats", EV_ERROR_UNKNOWN, stream_sink(stream),
                     [&] { return ev_stream_get_stats_impl(stream, stats); });
}

EV_API ev_error_t ev_stream_get_logprobs(ev_stream stream, ev_logprobs* out) {
    if (out != nullptr) *out = ev_logprobs{};
    return ev::guard("ev_stream_get_logprobs", EV_ERROR_UNKNOWN, stream_sink(stream),
                     [&] { return ev_stream_get_logprobs_impl(stream, out); });
}

}  // extern "C"

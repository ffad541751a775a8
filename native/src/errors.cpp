// Error texts, the per-thread / per-context last-error messages, the
// per-thread last generation stats, and the mapping of exceptions to codes.
#include "ev_internal.h"
#include "guard.h"

#include <exception>
#include <new>
#include <system_error>

namespace {
thread_local std::string t_last_error;
thread_local unsigned t_error_sets = 0;  // lets a carry tell "set" from "left over"

// The calling thread's last finished generation, so a caller reads the stats
// of its own call even when other threads generate on the same context.
struct ThreadStats {
    const ev::Engine* engine = nullptr;
    ev_generation_stats stats{};
};
thread_local ThreadStats t_stats;

// The calling thread's last ev_generate's logprob entries, for
// ev_get_last_logprobs (shared: the carry hands it over without a copy).
struct ThreadLogprobs {
    const ev::Engine* engine = nullptr;
    std::shared_ptr<const ev::LogprobList> list;
};
thread_local ThreadLogprobs t_logprobs;
}  // namespace

namespace ev {

void set_thread_error(const std::string& msg) {
    t_last_error = msg;
    ++t_error_sets;
}

const char* thread_error() { return t_last_error.c_str(); }

void record_thread_stats(const Engine* e, const ev_generation_stats& s) {
    t_stats.engine = e;
    t_stats.stats = s;
}

bool thread_stats(const Engine* e, ev_generation_stats* out) {
    if (t_stats.engine != e) return false;
    *out = t_stats.stats;
    return true;
}

void record_thread_logprobs(const Engine* e, std::shared_ptr<const LogprobList> list) {
    t_logprobs.engine = e;
    t_logprobs.list = std::move(list);
}

std::shared_ptr<const LogprobList> thread_logprobs(const Engine* e) {
    return t_logprobs.engine == e ? t_logprobs.list : nullptr;
}

void ThreadCarry::begin() {
    t_stats.engine = nullptr;
    t_logprobs = ThreadLogprobs{};
    error_sets = t_error_sets;
}

void ThreadCarry::end() {
    has_error = t_error_sets != error_sets;
    if (has_error) error = t_last_error;
    stats_engine = t_stats.engine;
    stats = t_stats.stats;
    logprobs_engine = t_logprobs.engine;
    logprobs = t_logprobs.list;
}

void ThreadCarry::apply() const {
    if (has_error) set_thread_error(error);
    if (stats_engine != nullptr) record_thread_stats(stats_engine, stats);
    if (logprobs_engine != nullptr) record_thread_logprobs(logprobs_engine, logprobs);
}

Engine* ErrorSink::engine() const noexcept {
    if (engine_ != nullptr) return engine_;
    if (ctx_ != nullptr && ctx_->magic.load() == kContextMagic && ctx_->engine && !ctx_->inherited()) {
        return ctx_->engine.get();
    }
    return nullptr;
}

ev_error_t error_from_exception(const char* where, ev_error_t other, ErrorSink sink) noexcept {
    ev_error_t code = EV_ERROR_UNKNOWN;
    std::string msg;
    try {
        try {
            throw;
        } catch (const std::bad_alloc&) {
            code = EV_ERROR_OUT_OF_MEMORY;
            msg = std::string(where) + ": out of memory";
        } catch (const std::system_error& ex) {
            // thread or lock creation failed: the process is out of a resource
            code = ex.code() == std::errc::resource_unavailable_try_again ||
                           ex.code() == std::errc::not_enough_memory
                       ? EV_ERROR_OUT_OF_MEMORY
                       : other;
            msg = std::string(where) + ": " + ex.what();
        } catch (const std::exception& ex) {
            code = other;
            msg = std::string(where) + ": " + ex.what();
        } catch (...) {
            code = other;
            msg = std::string(where) + ": unknown exception";
        }
        if (Engine* e = sink.engine()) {
            e->set_error(msg);
        } else {
            set_thread_error(msg);
        }
    } catch (...) {
        // building the message failed (out of memory): the code still tells
        if (code == EV_ERROR_UNKNOWN) code = EV_ERROR_OUT_OF_MEMORY;
    }
    return code;
}

ev_error_t fail(ev_error_t code, const std::string& msg) {
    set_thread_error(msg);
    return code;
}

void Engine::set_error(const std::string& msg) {
    set_thread_error(msg);
    std::lock_guard<std::mutex> lock(error_mutex);
    last_error = msg;
}

}  // namespace ev

ev::Engine* ev_engine_of(ev_context ctx, ev_error_t* code, bool need_model) {
    if (ctx == nullptr) {
        *code = ev::fail(EV_ERROR_CONTEXT_INVALID, "context is NULL");
        return nullptr;
    }
    if (ctx->magic.load() != ev::kContextMagic || !ctx->engine) {
        *code = ev::fail(EV_ERROR_CONTEXT_INVALID, "context was freed or is not an ev_context");
        return nullptr;
    }
    if (ctx->inherited()) {
        *code = ev::fail(EV_ERROR_CONTEXT_INVALID, ev::inherited_handle_message());
        return nullptr;
    }
    ev::Engine* e = ctx->engine.get();
    if (need_model && e->unloaded.load()) {
        *code = EV_ERROR_CONTEXT_INVALID;
        e->set_error("the model was unloaded because memory use exceeded the limit "
                     "(auto_unload_on_memory_pressure); create a new context");
        return nullptr;
    }
    *code = EV_SUCCESS;
    return e;
}

extern "C" {

static const char* ev_error_string_impl(int error) {
    switch (error) {
        case EV_SUCCESS: return "Success";
        case EV_ERROR_INVALID_PARAM: return "Invalid parameter";
        case EV_ERROR_OUT_OF_MEMORY: return "Out of memory";
        case EV_ERROR_MODEL_LOAD_FAILED: return "Failed to load model";
        case EV_ERROR_BACKEND_INIT_FAILED: return "Failed to initialize backend";
        case EV_ERROR_INFERENCE_FAILED: return "Inference failed";
        case EV_ERROR_CONTEXT_INVALID: return "Invalid context";
        case EV_ERROR_STREAM_ENDED: return "Stream ended";
        case EV_ERROR_NOT_IMPLEMENTED: return "Not implemented";
        case EV_ERROR_MEMORY_LIMIT_EXCEEDED: return "Memory limit exceeded";
        case EV_ERROR_UNSUPPORTED_BACKEND: return "Backend not supported";
        default: return "Unknown error";
    }
}

static const char* ev_last_error_message_impl(void) { return ev::thread_error(); }

static const char* ev_get_last_error_impl(ev_context ctx) {
    if (ctx == nullptr || ctx->magic.load() != ev::kContextMagic || !ctx->engine) {
        return ev::thread_error();
    }
    if (ctx->inherited()) return ev::inherited_handle_message();  // its error_mutex may be held
    ev::Engine* e = ctx->engine.get();
    std::lock_guard<std::mutex> lock(e->error_mutex);
    return e->last_error.c_str();
}

// ---- entry points ----

EV_API const char* ev_error_string(ev_error_t error) {
    int raw = ev::enum_bits(error);
    return ev::guard_quiet("ev_error_string", "Unknown error", [raw] { return ev_error_string_impl(raw); });
}

EV_API const char* ev_last_error_message(void) {
    return ev::guard_quiet("ev_last_error_message", "", [] { return ev_last_error_message_impl(); });
}

EV_API const char* ev_get_last_error(ev_context ctx) {
    return ev::guard_quiet("ev_get_last_error", "", [&] { return ev_get_last_error_impl(ctx); });
}

}  // extern "C"

// Error texts and the per-thread / per-context last-error messages.
#include "ev_internal.h"

namespace {
thread_local std::string t_last_error;
}

namespace ev {

void set_thread_error(const std::string& msg) { t_last_error = msg; }

const char* thread_error() { return t_last_error.c_str(); }

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

EV_API const char* ev_error_string(ev_error_t error) {
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

EV_API const char* ev_last_error_message(void) { return ev::thread_error(); }

EV_API const char* ev_get_last_error(ev_context ctx) {
    if (ctx == nullptr || ctx->magic.load() != ev::kContextMagic || !ctx->engine) {
        return ev::thread_error();
    }
    if (ctx->inherited()) return ev::inherited_handle_message();  // its error_mutex may be held
    ev::Engine* e = ctx->engine.get();
    std::lock_guard<std::mutex> lock(e->error_mutex);
    return e->last_error.c_str();
}

}  // extern "C"

// The guard every C entry point goes through: no C++ exception crosses the
// C API, and the calls that do ggml work run on the compute thread.
//
//   with_engine(where, other, ctx, use, body)
//                                         the entries that take a context:
//                                         guard + the handle's lookup + (for
//                                         kLocked) the context lock and a
//                                         loaded model; body(Engine&) returns
//                                         ev_error_t
//   with_engine_compute, with_engine_out_compute
//                                         the same on the compute thread (the
//                                         second for a body returning a handle)
//   guard(where, other, sink, body)       body returns ev_error_t
//   guard_out(where, other, sink, fallback, error, body)
//                                         body returns a value (a handle, a
//                                         string); the code goes to *error
//   guard_quiet(where, fallback, body)    entries without an error channel
//                                         (void, bool, const char*): the
//                                         message is kept as the thread's error
//                                         (ev_free, ev_is_valid,
//                                         ev_get_last_error and
//                                         ev_model_buffer_types take a context
//                                         but have no code to return: they
//                                         check the handle themselves)
//   on_compute(body)                      run body on the compute thread and
//                                         carry its thread-local results back
//   guard_compute, guard_out_compute      guard + on_compute: the entries that
//                                         do ggml work (load, generate, stream
//                                         next, embed)
//
// An exception maps to EV_ERROR_OUT_OF_MEMORY for std::bad_alloc (and thread
// creation failing for lack of resources), else to `other`, the entry's own
// failure code, with the exception's text as the message. The message is the
// thread's last error and, through the sink (a context handle, or a stream's
// engine), the context's last error.
#pragma once

#include "ev_internal.h"

#include <cstddef>
#include <cstring>
#include <mutex>
#include <type_traits>

namespace ev {

// An enum argument's bits as an int: any int may arrive from C, and reading an
// out-of-range value through the enum type is undefined in C++ (UBSan: "not a
// valid value for type").
template <class E>
int enum_bits(const E& value) noexcept {
    static_assert(sizeof(E) == sizeof(int), "int-sized enum");
    int bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
}

// Where a failure is recorded besides the calling thread: the last error of
// a context, given as its handle (checked when the failure happens: NULL,
// freed or fork()-inherited handles record nothing) or, for a stream, as its
// context's engine.
class ErrorSink {
   public:
    ErrorSink(std::nullptr_t) noexcept {}
    ErrorSink(ev_context ctx) noexcept : ctx_(ctx) {}
    ErrorSink(Engine* engine) noexcept : engine_(engine) {}
    Engine* engine() const noexcept;  // nullptr: the thread only

   private:
    ev_context ctx_ = nullptr;
    Engine* engine_ = nullptr;
};

// The code and message for the exception in flight (call inside a catch).
ev_error_t error_from_exception(const char* where, ev_error_t other, ErrorSink sink) noexcept;

template <class F>
ev_error_t guard(const char* where, ev_error_t other, ErrorSink sink, F&& body) noexcept {
    try {
        return body();
    } catch (...) {
        return error_from_exception(where, other, sink);
    }
}

template <class R, class F>
R guard_out(const char* where, ev_error_t other, ErrorSink sink, R fallback, ev_error_t* error,
            F&& body) noexcept {
    try {
        return body();
    } catch (...) {
        ev_error_t code = error_from_exception(where, other, sink);
        if (error != nullptr) *error = code;
        return fallback;
    }
}

template <class R, class F>
R guard_quiet(const char* where, R fallback, F&& body) noexcept {
    try {
        return body();
    } catch (...) {
        error_from_exception(where, EV_ERROR_UNKNOWN, nullptr);
        return fallback;
    }
}

template <class F>
void guard_quiet(const char* where, F&& body) noexcept {
    try {
        body();
    } catch (...) {
        error_from_exception(where, EV_ERROR_UNKNOWN, nullptr);
    }
}

// Runs body on the compute thread (see compute_thread.cpp) and returns its
// result; the error message and generation stats it left on that thread are
// set on the calling thread too. body must not throw (guard it inside) and
// its result type must be default-constructible.
template <class F>
auto on_compute(F&& body) -> decltype(body()) {
    using R = decltype(body());
    static_assert(std::is_default_constructible<R>::value, "on_compute needs a default-constructible result");
    if (on_compute_thread()) return body();
    R result{};
    ThreadCarry carry;
    run_on_compute_thread([&] {
        carry.begin();
        result = body();
        carry.end();
    });
    carry.apply();
    return result;
}

// The calling thread's safe point after an entry that did work: runs the
// memory-pressure check a call left pending (callback with no lock of ours
// held, then auto-unload), so the callback runs in the caller's thread.
void pressure_safe_point(ev_context ctx) noexcept;
void pressure_safe_point(Engine* e) noexcept;

// guard() and guard_out() around a body that runs on the compute thread
// (guarded there too, so nothing is thrown across threads).
template <class F>
ev_error_t guard_compute(const char* where, ev_error_t other, ErrorSink sink, F&& body) noexcept {
    return guard(where, other, sink, [&] { return on_compute([&] { return guard(where, other, sink, body); }); });
}

template <class R, class F>
R guard_out_compute(const char* where, ev_error_t other, ErrorSink sink, R fallback, ev_error_t* error,
                    F&& body) noexcept {
    return guard_out(where, other, sink, fallback, error, [&] {
        return on_compute([&] { return guard_out(where, other, sink, fallback, error, body); });
    });
}

// How an entry uses its context (with_engine). Lock order: a stream's lock,
// then the context lock; the memory-pressure callback runs with neither.
struct EngineUse {
    bool need_model;  // an unloaded model fails the lookup (CONTEXT_INVALID)
    bool lock;        // body runs under the context lock, with the model loaded
};
// Calls that touch the model, the llama.cpp contexts or the prompt cache.
constexpr EngineUse kLocked{true, true};
// Calls that must not wait for a running generation: the cancels, the
// statistics, the memory limit and callback (the pressure check they may run
// calls the host's callback, which must find no lock of ours held). They
// answer on an unloaded context too.
constexpr EngineUse kUnlocked{false, false};

// The lookup and the lock of with_engine (inside its guard).
template <class F>
ev_error_t engine_call(ev_context ctx, EngineUse use, F& body) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code, use.need_model);
    if (e == nullptr) return code;
    if (!use.lock) return body(*e);
    std::lock_guard<std::mutex> lock(e->mutex);
    if (e->model == nullptr) {
        e->set_error("the model is not loaded");
        return EV_ERROR_CONTEXT_INVALID;
    }
    return body(*e);
}

template <class F>
ev_error_t with_engine(const char* where, ev_error_t other, ev_context ctx, EngineUse use, F&& body) noexcept {
    return guard(where, other, ctx, [&] { return engine_call(ctx, use, body); });
}

template <class F>
ev_error_t with_engine_compute(const char* where, ev_error_t other, ev_context ctx, EngineUse use,
                               F&& body) noexcept {
    return guard_compute(where, other, ctx, [&] { return engine_call(ctx, use, body); });
}

// body(Engine&, ev_error_t* code) returns the handle and sets *code; a failed
// lookup returns fallback with its code. error may be NULL.
template <class R, class F>
R with_engine_out_compute(const char* where, ev_error_t other, ev_context ctx, EngineUse use, R fallback,
                          ev_error_t* error, F&& body) noexcept {
    return guard_out_compute(where, other, ctx, fallback, error, [&] {
        R result = fallback;
        auto call = [&](Engine& e) {
            ev_error_t code = EV_SUCCESS;
            result = body(e, &code);
            return code;
        };
        ev_error_t code = engine_call(ctx, use, call);
        if (error != nullptr) *error = code;
        return result;
    });
}

}  // namespace ev

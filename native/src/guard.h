// The guard every C entry point goes through: no C++ exception crosses the
// C API, and the calls that do ggml work run on the compute thread.
//
//   guard(where, other, ctx, body)        body returns ev_error_t
//   guard_out(where, other, ctx, fallback, error, body)
//                                         body returns a value (a handle, a
//                                         string); the code goes to *error
//   guard_quiet(where, fallback, body)    entries without an error channel
//                                         (void, bool, const char*): the
//                                         message is kept as the thread's error
//   on_compute(body)                      run body on the compute thread and
//                                         carry its thread-local results back
//   guard_compute, guard_out_compute      guard + on_compute: the entries that
//                                         do ggml work (load, generate, stream
//                                         next, embed)
//
// An exception maps to EV_ERROR_OUT_OF_MEMORY for std::bad_alloc (and thread
// creation failing for lack of resources), else to `other`, the entry's own
// failure code, with the exception's text as the message.
#pragma once

#include "ev_internal.h"

#include <cstring>
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

// The code and message for the exception in flight (call inside a catch).
ev_error_t error_from_exception(const char* where, ev_error_t other, ev_context ctx) noexcept;

template <class F>
ev_error_t guard(const char* where, ev_error_t other, ev_context ctx, F&& body) noexcept {
    try {
        return body();
    } catch (...) {
        return error_from_exception(where, other, ctx);
    }
}

template <class R, class F>
R guard_out(const char* where, ev_error_t other, ev_context ctx, R fallback, ev_error_t* error,
            F&& body) noexcept {
    try {
        return body();
    } catch (...) {
        ev_error_t code = error_from_exception(where, other, ctx);
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
ev_error_t guard_compute(const char* where, ev_error_t other, ev_context ctx, F&& body) noexcept {
    return guard(where, other, ctx, [&] { return on_compute([&] { return guard(where, other, ctx, body); }); });
}

template <class R, class F>
R guard_out_compute(const char* where, ev_error_t other, ev_context ctx, R fallback, ev_error_t* error,
                    F&& body) noexcept {
    return guard_out(where, other, ctx, fallback, error, [&] {
        return on_compute([&] { return guard_out(where, other, ctx, fallback, error, body); });
    });
}

}  // namespace ev

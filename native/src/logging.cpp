// llama.cpp log routing: verbosity, a host log callback, and per-thread
// capture of warnings/errors so a failed load can explain itself.
#include "ev_internal.h"
#include "guard.h"

#include <cstdio>

namespace {

std::mutex g_log_mutex;  // guards the host callback fields
ev_log_callback g_host_cb = nullptr;
void* g_host_ud = nullptr;
std::atomic<bool> g_verbose{false};
std::once_flag g_hook_once;

thread_local int t_capture_depth = 0;
thread_local std::string t_capture;

int to_ev_level(ggml_log_level level) {
    switch (level) {
        case GGML_LOG_LEVEL_DEBUG: return 1;
        case GGML_LOG_LEVEL_INFO: return 2;
        case GGML_LOG_LEVEL_WARN: return 3;
        case GGML_LOG_LEVEL_ERROR: return 4;
        default: return 2;  // GGML_LOG_LEVEL_CONT/NONE: continuation lines
    }
}

void log_hook(ggml_log_level level, const char* text, void* /*ud*/) {
    if (text == nullptr) return;
    int lvl = to_ev_level(level);
    if (t_capture_depth > 0 && lvl >= 3) {
        // Keep the tail: the last lines explain the failure.
        if (t_capture.size() > 4000) t_capture.erase(0, t_capture.size() - 2000);
        t_capture += text;
    }
    ev_log_callback cb;
    void* ud;
    {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        cb = g_host_cb;
        ud = g_host_ud;
    }
    if (cb != nullptr) {
        cb(lvl, text, ud);
        return;
    }
    if (g_verbose.load()) {  // nothing on stderr unless logging was asked for
        fputs(text, stderr);
    }
}

}  // namespace

namespace ev {

void install_log_hook() {
    std::call_once(g_hook_once, [] { llama_log_set(log_hook, nullptr); });
}

void log_info(const std::string& text) { log_hook(GGML_LOG_LEVEL_INFO, text.c_str(), nullptr); }

LogCapture::LogCapture() {
    if (t_capture_depth++ == 0) t_capture.clear();
}

LogCapture::~LogCapture() { --t_capture_depth; }

std::string LogCapture::text() const {
    std::string s = t_capture;
    // one line: llama.cpp messages end with newlines
    for (auto& c : s) {
        if (c == '\n') c = ' ';
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

}  // namespace ev

extern "C" {

static void ev_set_verbose_impl(bool verbose) {
    ev::install_log_hook();
    g_verbose.store(verbose);
}

static void ev_set_log_callback_impl(ev_log_callback callback, void* user_data) {
    ev::install_log_hook();
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_host_cb = callback;
    g_host_ud = user_data;
}

// ---- entry points ----

EV_API void ev_set_verbose(bool verbose) {
    ev::guard_quiet("ev_set_verbose", [&] { ev_set_verbose_impl(verbose); });
}

EV_API void ev_set_log_callback(ev_log_callback callback, void* user_data) {
    ev::guard_quiet("ev_set_log_callback", [&] { ev_set_log_callback_impl(callback, user_data); });
}

}  // extern "C"

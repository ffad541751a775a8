// Internal types of the Edge Veda core. Not part of the C API.
#pragma once

#include "edge_veda.h"
#include "llama.h"
#include "ggml-backend.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ev {

constexpr uint32_t kContextMagic = 0x45564354;  // "EVCT"
constexpr uint32_t kStreamMagic = 0x45565354;   // "EVST"
constexpr uint32_t kDeadMagic = 0xDEADDEAD;

// ---- errors (errors.cpp) ----
// Store msg as this thread's last error and return code.
ev_error_t fail(ev_error_t code, const std::string& msg);
void set_thread_error(const std::string& msg);
const char* thread_error();

// One generated token's logprob entry (ev_token_logprob), kept by a
// Generation while logprobs are on (see edge_veda.h for what the numbers are).
struct TopLogprob {
    llama_token token;
    std::string text;
    float logprob;
};
struct TokenLogprob {
    llama_token token;
    std::string text;
    float logprob;
    std::vector<TopLogprob> top;
};
using LogprobList = std::vector<TokenLogprob>;

// What a call leaves in thread-local state (its error message, its stats),
// carried from the compute thread back to the calling thread.
struct ThreadCarry {
    unsigned error_sets = 0;
    bool has_error = false;
    std::string error;
    const struct Engine* stats_engine = nullptr;
    ev_generation_stats stats{};
    const struct Engine* logprobs_engine = nullptr;
    std::shared_ptr<const LogprobList> logprobs;
    void begin();        // on the compute thread, before the call
    void end();          // on the compute thread, after it
    void apply() const;  // on the calling thread
};
void record_thread_stats(const struct Engine* e, const ev_generation_stats& s);
bool thread_stats(const struct Engine* e, ev_generation_stats* out);
// The calling thread's last ev_generate's logprob entries (null: off).
void record_thread_logprobs(const struct Engine* e, std::shared_ptr<const LogprobList> list);
std::shared_ptr<const LogprobList> thread_logprobs(const struct Engine* e);

// ---- the compute thread (compute_thread.cpp) ----
// Runs fn on the process's one compute thread and waits; inline when called
// on it. fn must not throw.
void run_on_compute_thread(const std::function<void()>& fn);
bool on_compute_thread();
// In a fork()ed child: forget the parent's compute thread (it does not exist
// here, and its lock may be held); the next call starts a new one.
void compute_thread_after_fork();
// From work running on the compute thread: runs fn on the thread that is
// waiting for that work, and waits (inline when there is no such thread).
void run_on_caller(const std::function<void()>& fn);

// ---- logging (logging.cpp) ----
void install_log_hook();
// Log a line of ours (ending in '\n') at info level, through the same route as llama.cpp's.
void log_info(const std::string& text);
// Collects llama.cpp's warning/error lines logged on this thread while alive,
// so a failed load can say what llama.cpp said.
class LogCapture {
   public:
    LogCapture();
    ~LogCapture();
    std::string text() const;
};

// ---- fork() (fork_guard.cpp) ----
// Bumped in the child of every fork(); a handle made in an earlier generation
// belongs to the parent process.
uint32_t fork_generation();
// The error text for a handle used in a fork()ed child.
const char* inherited_handle_message();

// ---- backend (backend.cpp) ----
void backend_acquire();
void backend_release();
int default_thread_count();
// Whether backend b is compiled into this build (AUTO and CPU: always).
bool backend_compiled_in(ev_backend_t b);
// The GPU devices of backend b (Vulkan or Metal) on this machine; empty when
// not compiled in or none was found.
std::vector<ggml_backend_dev_t> gpu_devices(ev_backend_t b);

// ---- the CPU backend (cpu_variants.cpp) ----
// Loads the CPU variant module in a build with CPU variants (a no-op check of
// $EDGEVEDA_CPU_VARIANT otherwise). Decided once per process; on failure the
// same code and message every call (set as the thread's error).
ev_error_t cpu_backend_load();

// ---- running out of memory (memory_fit.cpp) ----
// Bytes the process may still allocate (the tightest of RLIMIT_AS, the
// cgroup's memory.max and MemAvailable; SIZE_MAX when none is known) and,
// in *which, what sets it.
size_t memory_headroom(std::string* which);
// Whether llama.cpp's account of a failure is an allocation failure.
bool looks_like_alloc_failure(const std::string& said);
// ggml's abort hook: an allocation assertion becomes std::bad_alloc on the
// compute thread; others print one line (no debugger) before ggml aborts.
void install_abort_hook();
// On the compute thread, before ggml computes with n_threads: whether the
// OpenMP worker threads it will start (libgomp exits the process when it
// cannot) have room for their stacks; OUT_OF_MEMORY with *why when not.
// worker_threads_started(n) after a computation succeeded (they exist then).
ev_error_t check_worker_threads(int n_threads, std::string* why);
void worker_threads_started(int n_threads);
size_t file_size(const std::string& path);  // 0 when unknown

// ---- memory accounting (memory.cpp) ----
// The bytes of llama.cpp's buffers for one llama_context: the model's
// weights, the context's memory (KV cache) and its compute buffers (for a
// model loaded with no_alloc: the sizes llama.cpp would allocate).
struct BufferBytes {
    size_t model = 0, context = 0, compute = 0;
    size_t total() const { return model + context + compute; }
};
BufferBytes buffer_bytes(const llama_context* lctx);
// The same by buffer type (ggml_backend_buft_name; "unknown" when it has none).
std::vector<std::pair<std::string, BufferBytes>> buffer_bytes_by_type(const llama_context* lctx);
std::string fmt_mib(size_t bytes);  // "85.8 MiB"

// ---- buffer types (buffer_types.cpp) ----
// The model's weight buffers by buffer type with sizes, sorted by name:
// "CPU_Mapped 85.8 MiB, CPU_REPACK 57.0 MiB" (ev_model_buffer_types).
std::string weight_buffer_types(const llama_context* lctx);

// ---- GGUF pre-validation (gguf_check.cpp) ----
// Checks the file can be opened, is a regular file, and has a sane GGUF
// header before llama.cpp sees it. Returns "" when fine, else the reason.
std::string check_gguf_file(const std::string& path);

// ---- the shared engine state ----
// One Engine per ev_context. Streams hold a shared_ptr to it, so a stream
// freed after ev_free() still finds valid (if empty) state.
struct Engine {
    std::mutex mutex;  // the context lock: model, llama contexts, KV, prompt cache

    llama_model* model = nullptr;
    llama_context* lctx = nullptr;
    llama_context* embed_ctx = nullptr;
    const llama_vocab* vocab = nullptr;

    ev_config config{};
    std::string model_path;
    std::string name;
    std::string arch;
    std::string buffer_types;  // ev_model_buffer_types: set in ev_init, then read-only (no lock)
    int n_threads = 1;

    std::atomic<bool> freed{false};
    std::atomic<bool> unloaded{false};

    // last error of calls on this context
    std::mutex error_mutex;
    std::string last_error;

    // cancellation: set by ev_generate_cancel/ev_stream_cancel, read by
    // llama.cpp's abort callback during decode and between tokens
    std::atomic<bool> cancel_requested{false};
    std::atomic<bool> busy{false};          // a blocking generation runs
    std::atomic<void*> active_stream{nullptr};

    // prompt cache: the tokens whose K/V are in sequence 0
    bool prompt_cache = true;
    std::vector<llama_token> cached_tokens;

    // memory (atomics so stats never wait for a generation)
    std::atomic<size_t> limit{0};
    std::atomic<size_t> current{0};
    std::atomic<size_t> peak{0};
    std::atomic<size_t> model_bytes{0};
    std::atomic<size_t> context_bytes{0};
    std::atomic<bool> pressure_check_pending{false};
    std::mutex callback_mutex;  // guards the two fields below only
    ev_memory_pressure_callback pressure_cb = nullptr;
    void* pressure_ud = nullptr;

    ev_generation_stats last_stats{};

    void set_error(const std::string& msg);
    // Recompute the byte counts from llama.cpp's buffers. Context lock held.
    void refresh_memory_locked();
    // Free the model and contexts. Context lock held.
    void release_locked();
    // Run the pressure check: callback with no lock held, then auto-unload.
    // Called at safe points, by the thread that did the work.
    void check_pressure();
};

}  // namespace ev

struct ev_context_impl {
    std::atomic<uint32_t> magic{ev::kContextMagic};
    const uint32_t fork_generation = ev::fork_generation();  // the process it belongs to
    bool inherited() const { return fork_generation != ev::fork_generation(); }
    std::shared_ptr<ev::Engine> engine;
};

// Validates a context handle; on failure records the error and returns null.
ev::Engine* ev_engine_of(ev_context ctx, ev_error_t* code, bool need_model = true);

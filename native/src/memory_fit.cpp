// Running out of memory is an error, never an abort.
//
// 1. Before a model is loaded, what it will take (llama.cpp's own buffer
//    sizes from a dry run, plus the file mapping) is compared with what the
//    process may still allocate: the address-space limit (ulimit -v,
//    RLIMIT_AS) less what is mapped now, the cgroup's memory.max less its
//    memory.current, and MemAvailable. Not fitting is EV_ERROR_OUT_OF_MEMORY
//    before anything is allocated.
// 2. ggml stops the process when ggml_init() cannot allocate its buffer
//    (GGML_ASSERT(ctx->mem_buffer != NULL)), and prints a backtrace through
//    gdb first. Our abort hook turns that one assertion into std::bad_alloc
//    on the compute thread (llama.cpp's loaders catch it and fail; the entry
//    guard maps it to EV_ERROR_OUT_OF_MEMORY), and for every other assertion
//    prints its one line without spawning a debugger.
// 3. A load or context failure whose reason is an allocation failure is
//    reported as EV_ERROR_OUT_OF_MEMORY, whatever the stage.
#include "ev_internal.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <new>
#include <string>

#if !defined(_WIN32)
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

// libgomp's, when linked (it is, in OpenMP builds, the wheel's included): a throw must not start
// inside a parallel region.
extern "C" int omp_in_parallel(void) __attribute__((weak));

namespace {

constexpr size_t kUnlimited = static_cast<size_t>(-1);

size_t read_first_number(const char* path, const char* key = nullptr) {
    std::ifstream f(path);
    if (!f) return kUnlimited;
    std::string word;
    if (key == nullptr) {
        if (!(f >> word) || word == "max") return kUnlimited;
        return static_cast<size_t>(std::stoull(word));
    }
    std::string line;
    while (std::getline(f, line)) {
        if (line.compare(0, strlen(key), key) == 0) {
            return static_cast<size_t>(std::stoull(line.substr(strlen(key)))) * 1024;  // kB
        }
    }
    return kUnlimited;
}

// Bytes of address space mapped now (VmSize).
size_t mapped_now() {
#if defined(__linux__)
    std::ifstream f("/proc/self/statm");
    size_t pages = 0;
    if (f >> pages) return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
#endif
    return 0;
}

std::string cgroup_dir() {
#if defined(__linux__)
    std::ifstream f("/proc/self/cgroup");
    std::string line;
    while (std::getline(f, line)) {
        if (line.compare(0, 3, "0::") == 0) return "/sys/fs/cgroup" + line.substr(3);  // cgroup v2
    }
#endif
    return "";
}

std::string mib(size_t bytes) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

bool is_alloc_assert(const char* msg) {
    return msg != nullptr && strstr(msg, "mem_buffer != NULL") != nullptr;
}

void abort_hook(const char* message) {
    bool in_region = omp_in_parallel != nullptr && omp_in_parallel();
    if (is_alloc_assert(message) && ev::on_compute_thread() && !in_region) {
        ev::log_info(std::string("edgeveda: ") + message + " (out of memory)\n");
        throw std::bad_alloc();
    }
    fprintf(stderr, "%s\n", message);  // then ggml calls abort()
}

}  // namespace

namespace ev {

size_t memory_headroom(std::string* which) {
    size_t best = kUnlimited;
    auto consider = [&](size_t left, const std::string& what) {
        if (left < best) {
            best = left;
            *which = what;
        }
    };
    try {
#if !defined(_WIN32)
        struct rlimit as;
        if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
            size_t limit = static_cast<size_t>(as.rlim_cur), used = mapped_now();
            consider(limit > used ? limit - used : 0,
                     "the address-space limit (ulimit -v) of " + mib(limit) + ", " + mib(used) + " in use");
        }
#endif
        std::string cg = cgroup_dir();
        if (!cg.empty()) {
            size_t max = read_first_number((cg + "/memory.max").c_str());
            size_t cur = read_first_number((cg + "/memory.current").c_str());
            if (max != kUnlimited && cur != kUnlimited) {
                consider(max > cur ? max - cur : 0,
                         "the cgroup memory limit (memory.max) of " + mib(max) + ", " + mib(cur) + " in use");
            }
        }
        size_t avail = read_first_number("/proc/meminfo", "MemAvailable:");
        if (avail != kUnlimited) consider(avail, "the memory available (MemAvailable) of " + mib(avail));
    } catch (const std::exception&) {
        // an unreadable or odd /proc or /sys file: no limit known from it
    }
    return best;
}

bool looks_like_alloc_failure(const std::string& said) {
    for (const char* s : {"Cannot allocate memory", "insufficient memory", "failed to allocate", "bad_alloc",
                          "out of memory"}) {
        if (said.find(s) != std::string::npos) return true;
    }
    return false;
}

size_t file_size(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    return f ? static_cast<size_t>(f.tellg()) : 0;
}

// libgomp starts a parallel region's worker threads the first time the
// compute thread needs them and keeps them; when it cannot create one (no
// address space left for its stack) it prints "Thread creation failed" and
// exits the process. The load's fit check leaves room for them, but what is
// mapped between the load and the first decode (malloc arenas of new threads,
// 64 MiB of address space each) is not known then. So before ggml first
// computes with n threads, map their stacks once, then unmap them.
namespace {
int g_workers_started = 1;  // compute thread only: the widest region that has run

size_t parse_omp_stacksize(const char* text) {
    if (text == nullptr || *text == '\0') return 0;
    char* end = nullptr;
    unsigned long long v = strtoull(text, &end, 10);
    switch (end && *end ? (*end | 0x20) : 'k') {  // OMP_STACKSIZE: K by default
        case 'b': return static_cast<size_t>(v);
        case 'k': return static_cast<size_t>(v) << 10;
        case 'm': return static_cast<size_t>(v) << 20;
        case 'g': return static_cast<size_t>(v) << 30;
        default: return 0;
    }
}

size_t worker_stack_bytes() {
    size_t stack = parse_omp_stacksize(getenv("GOMP_STACKSIZE"));
    if (stack == 0) stack = parse_omp_stacksize(getenv("OMP_STACKSIZE"));
#if defined(__GLIBC__)
    if (stack == 0) {
        pthread_attr_t attr;
        if (pthread_getattr_default_np(&attr) == 0) {
            pthread_attr_getstacksize(&attr, &stack);
            pthread_attr_destroy(&attr);
        }
    }
#endif
    if (stack == 0) stack = size_t(8) << 20;
    return stack + (size_t(1) << 20);  // the guard page, TLS and the thread's first allocations
}
}  // namespace

ev_error_t check_worker_threads(int n_threads, std::string* why) {
#if defined(__linux__)
    if (n_threads <= g_workers_started) return EV_SUCCESS;
    const size_t bytes = worker_stack_bytes() * static_cast<size_t>(n_threads - 1);
    void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        std::string from;
        memory_headroom(&from);
        *why = "out of memory: the " + std::to_string(n_threads - 1) + " worker thread(s) of " +
               std::to_string(n_threads) + " compute threads need " + mib(bytes) +
               " of stack that cannot be mapped (" + (from.empty() ? "no address space left" : from) +
               "); use fewer threads, a smaller context or a higher limit";
        return EV_ERROR_OUT_OF_MEMORY;
    }
    munmap(p, bytes);
#else
    (void)n_threads;
    (void)why;
#endif
    return EV_SUCCESS;
}

void worker_threads_started(int n_threads) {
    if (n_threads > g_workers_started) g_workers_started = n_threads;
}

void install_abort_hook() {
    static std::once_flag once;
    std::call_once(once, [] { ggml_set_abort_callback(abort_hook); });
}

}  // namespace ev

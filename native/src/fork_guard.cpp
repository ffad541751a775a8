// fork(): handles made before a fork are the parent's. In the child their
// locks may be held by parent threads that do not exist there, and llama.cpp's
// thread pool is gone, so touching them could hang or crash. A pthread_atfork
// handler bumps a generation counter in the child; every handle remembers the
// generation it was made in, and the API refuses (or, for the free functions,
// forgets without touching) a handle from an earlier generation. Checking is
// one relaxed atomic load per call: cheaper than getpid(), which is a system
// call since glibc 2.25.
#include "ev_internal.h"

#if !defined(_WIN32)
#include <pthread.h>
#endif

namespace {
std::atomic<uint32_t> g_fork_generation{0};

#if !defined(_WIN32)
void on_fork_child() {
    g_fork_generation.fetch_add(1, std::memory_order_relaxed);
    ev::compute_thread_after_fork();
}

// Registered when the library is loaded, so a fork before the first ev_init
// is counted too (a handle cannot exist then, but the counter stays exact).
struct ForkHookInstaller {
    ForkHookInstaller() { pthread_atfork(nullptr, nullptr, on_fork_child); }
} g_installer;
#endif
}  // namespace

namespace ev {

uint32_t fork_generation() { return g_fork_generation.load(std::memory_order_relaxed); }

const char* inherited_handle_message() {
    return "this handle was created before fork() (in the parent process) and cannot be used in the "
           "child; create a new context in this process (see edge_veda.h, 'fork()')";
}

}  // namespace ev

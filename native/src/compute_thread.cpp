// The compute thread: the one thread of the process that runs ggml work
// (model load, prompt processing, decode, embeddings), whichever thread called.
//
// Why: ggml's CPU backend computes on GNU OpenMP, and ggml_barrier() is an
// `omp barrier` (one per graph node, hundreds per token). libgomp gives every
// thread that starts a parallel region a pool of workers of its own, kept
// until that thread exits, and counts all of them in gomp_managed_threads.
// As soon as that count exceeds the CPUs available, every OpenMP wait spins
// only gomp_throttled_spin_count_var times (100 by default, 1000 with
// OMP_WAIT_POLICY=active) before it sleeps on a futex (libgomp
// config/linux/wait.h, do_spin). So once a second thread has computed (an
// application thread, an executor thread, the thread that loaded the model),
// each barrier of every thread's decode becomes a futex sleep and wake-up:
// decode ran 3x slower on a 2-core VM (8x with AMX). With one thread starting
// every region there is one pool and the barriers spin as intended.
//
// Calls hand their work here and wait; a call made on this thread runs
// inline. Cancels, stats and other calls that do no ggml work stay on the
// caller's thread. The load-progress callback is handed back to the waiting
// caller (run_on_caller), so host callbacks run on the host's own thread.
#include "ev_internal.h"

#include <condition_variable>
#include <deque>
#include <thread>


namespace {

struct Task {
    const std::function<void()>* fn;
    bool done = false;
    std::condition_variable cv;  // the caller waits here: done, or a callback to run
    // a callback the work asks the caller's thread to run (run_on_caller)
    const std::function<void()>* callback = nullptr;
    bool callback_done = false;
    std::condition_variable callback_cv;  // the compute thread waits here
};

struct Worker {
    std::mutex mutex;
    std::condition_variable work;
    std::deque<Task*> queue;
    bool started = false;
};

// Never destroyed: the detached thread may still wait on it at exit. After
// fork() the child gets a fresh one (compute_thread_after_fork) (the parent's mutex may be held by a
// thread that does not exist in the child, and its compute thread is gone).
Worker* g_worker = new Worker;
thread_local bool t_is_compute_thread = false;
// A caller while it runs a callback for the compute thread (run_on_caller):
// the compute thread is waiting for it, so work the callback asks for (it
// may call this API) runs inline here instead of waiting for it forever.
thread_local bool t_runs_for_compute = false;
thread_local Task* t_current_task = nullptr;  // on the compute thread: the task it serves

void serve(Worker* w) {
    t_is_compute_thread = true;
    std::unique_lock<std::mutex> lock(w->mutex);
    for (;;) {
        w->work.wait(lock, [w] { return !w->queue.empty(); });
        Task* task = w->queue.front();
        w->queue.pop_front();
        t_current_task = task;
        lock.unlock();
        (*task->fn)();  // the callers' bodies are guarded: nothing is thrown
        lock.lock();
        t_current_task = nullptr;
        task->done = true;
        task->cv.notify_one();
    }
}

}  // namespace

namespace ev {

void compute_thread_after_fork() { g_worker = new Worker; }

bool on_compute_thread() { return t_is_compute_thread || t_runs_for_compute; }

void run_on_compute_thread(const std::function<void()>& fn) {
    if (on_compute_thread()) {
        fn();
        return;
    }
    Worker* w = g_worker;
    Task task;
    task.fn = &fn;
    std::unique_lock<std::mutex> lock(w->mutex);
    if (!w->started) {
        std::thread(serve, w).detach();  // std::system_error is the caller's guard's to map
        w->started = true;
    }
    w->queue.push_back(&task);
    w->work.notify_one();
    for (;;) {
        task.cv.wait(lock, [&task] { return task.done || task.callback != nullptr; });
        if (task.done) return;
        const std::function<void()>* cb = task.callback;
        lock.unlock();
        t_runs_for_compute = true;
        (*cb)();  // must not throw (the callbacks are C functions)
        t_runs_for_compute = false;
        lock.lock();
        task.callback = nullptr;
        task.callback_done = true;
        task.callback_cv.notify_one();
    }
}

void run_on_caller(const std::function<void()>& fn) {
    Task* task = t_current_task;
    if (task == nullptr) {  // not serving a caller (or called inline on the compute thread)
        fn();
        return;
    }
    Worker* w = g_worker;
    std::unique_lock<std::mutex> lock(w->mutex);
    task->callback_done = false;
    task->callback = &fn;
    task->cv.notify_one();
    task->callback_cv.wait(lock, [task] { return task->callback_done; });
}

}  // namespace ev

// Context lifetime (ev_init/ev_free), model info, memory accounting, the
// memory limit and pressure callback, reset.
#include "ev_internal.h"
#include "guard.h"

#include "llama-ext.h"  // llama_get_memory_breakdown: exact buffer sizes

#include <cmath>
#include <cstring>
#include <new>

namespace ev {

namespace {

struct Breakdown {
    size_t model = 0, context = 0, compute = 0;
};

Breakdown breakdown_of(const llama_context* lctx) {
    Breakdown b;
    if (lctx == nullptr) return b;
    for (const auto& kv : llama_get_memory_breakdown(lctx)) {
        b.model += kv.second.model;
        b.context += kv.second.context;
        b.compute += kv.second.compute;
    }
    return b;
}

std::string meta_string(const llama_model* model, const char* key) {
    char buf[512];
    int32_t n = llama_model_meta_val_str(model, key, buf, sizeof buf);
    if (n < 0) return "";
    return std::string(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

std::string fmt_mib(size_t bytes) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

struct ProgressBridge {
    ev_load_progress_callback cb;
    void* ud;
    bool aborted = false;
};

bool progress_bridge(float p, void* ud) {
    auto* b = static_cast<ProgressBridge*>(ud);
    bool go = true;
    run_on_caller([&] { go = b->cb(p, b->ud); });  // the host's callback, on the host's thread
    if (!go) b->aborted = true;
    return go;
}

bool abort_cb(void* data) {
    return static_cast<Engine*>(data)->cancel_requested.load(std::memory_order_relaxed);
}

ev_error_t validate_config(const ev_config* c) {
    if (c == nullptr) return fail(EV_ERROR_INVALID_PARAM, "config is NULL");
    if (c->model_path == nullptr) return fail(EV_ERROR_INVALID_PARAM, "config.model_path is NULL");
    if (c->model_path[0] == '\0') return fail(EV_ERROR_INVALID_PARAM, "config.model_path is empty");
    // Read the enum as its bits: in C++ loading an out-of-range value through
    // the enum type is undefined (UBSan: "not a valid value for type").
    int backend = 0;
    static_assert(sizeof backend == sizeof c->backend, "ev_backend_t is int-sized");
    std::memcpy(&backend, &c->backend, sizeof backend);
    if (backend < EV_BACKEND_AUTO || backend > EV_BACKEND_CPU) {
        return fail(EV_ERROR_INVALID_PARAM,
                    "config.backend " + std::to_string(backend) + " is not one of AUTO(0), METAL(1), VULKAN(2), CPU(3)");
    }
    if (c->num_threads < 0) return fail(EV_ERROR_INVALID_PARAM, "config.num_threads must be >= 0 (0 = auto)");
    if (c->context_size < 0) return fail(EV_ERROR_INVALID_PARAM, "config.context_size must be >= 0 (0 = the model's)");
    if (c->batch_size <= 0) return fail(EV_ERROR_INVALID_PARAM, "config.batch_size must be > 0");
    if (c->gpu_layers < -1) return fail(EV_ERROR_INVALID_PARAM, "config.gpu_layers must be >= -1 (-1 = all)");
    if (c->flash_attn < -1 || c->flash_attn > 1) return fail(EV_ERROR_INVALID_PARAM, "config.flash_attn must be -1, 0 or 1");
    for (int t : {c->kv_cache_type_k, c->kv_cache_type_v}) {
        if (t < 0 || t >= GGML_TYPE_COUNT || ggml_blck_size((ggml_type)t) == 0) {
            return fail(EV_ERROR_INVALID_PARAM, "config.kv_cache_type_k/v " + std::to_string(t) + " is not a ggml_type");
        }
    }
    if (c->reserved != nullptr) {
        // An ev_config_extras (edge_veda.h): exactly this library's size, so
        // a field of a newer header is never silently ignored.
        const auto* x = static_cast<const ev_config_extras*>(c->reserved);
        if (x->struct_size != sizeof(ev_config_extras)) {
            return fail(EV_ERROR_INVALID_PARAM,
                        "config.reserved: ev_config_extras.struct_size is " + std::to_string(x->struct_size) +
                            (x->struct_size < sizeof(ev_config_extras) ? ", too small" : ", unknown") +
                            ": it must be sizeof(ev_config_extras) = " + std::to_string(sizeof(ev_config_extras)) +
                            " (API " EV_VERSION_STRING "; fill it with ev_config_extras_default), or "
                            "config.reserved must be NULL");
        }
        if (x->cpu_extra_buffers != 0 && x->cpu_extra_buffers != 1) {
            return fail(EV_ERROR_INVALID_PARAM, "ev_config_extras.cpu_extra_buffers " +
                                                    std::to_string(x->cpu_extra_buffers) +
                                                    " must be 1 (on) or 0 (off)");
        }
        for (int i = 0; i < 7; ++i) {
            if (x->reserved[i] != 0) {
                return fail(EV_ERROR_INVALID_PARAM,
                            "ev_config_extras.reserved[" + std::to_string(i) + "] must be 0");
            }
        }
    }
    return EV_SUCCESS;
}

}  // namespace

void Engine::refresh_memory_locked() {
    Breakdown b = breakdown_of(lctx);
    Breakdown eb = breakdown_of(embed_ctx);
    size_t m = b.model;
    size_t c = b.context + b.compute + eb.context + eb.compute;
    model_bytes.store(m);
    context_bytes.store(c);
    current.store(m + c);
    size_t p = peak.load();
    while (m + c > p && !peak.compare_exchange_weak(p, m + c)) {
    }
}

void Engine::release_locked() {
    if (embed_ctx) llama_free(embed_ctx);
    if (lctx) llama_free(lctx);
    if (model) llama_model_free(model);
    embed_ctx = nullptr;
    lctx = nullptr;
    model = nullptr;
    vocab = nullptr;
    cached_tokens.clear();
    model_bytes.store(0);
    context_bytes.store(0);
    current.store(0);
}

void Engine::check_pressure() {
    pressure_check_pending.store(false);
    size_t lim = limit.load();
    size_t cur = current.load();
    if (lim == 0 || unloaded.load() || freed.load()) return;
    if (static_cast<double>(cur) >= 0.9 * static_cast<double>(lim)) {
        ev_memory_pressure_callback cb;
        void* ud;
        {
            std::lock_guard<std::mutex> lock(callback_mutex);
            cb = pressure_cb;
            ud = pressure_ud;
        }
        if (cb) cb(ud, cur, lim);  // no lock of ours held
    }
    if (config.auto_unload_on_memory_pressure && limit.load() != 0 && current.load() > limit.load()) {
        if (active_stream.load() != nullptr) {
            pressure_check_pending.store(true);  // unload when the stream ends
            return;
        }
        std::unique_lock<std::mutex> lock(mutex, std::try_to_lock);
        if (!lock.owns_lock()) {
            pressure_check_pending.store(true);  // the worker will retry at its safe point
            return;
        }
        if (freed.load() || unloaded.load()) return;
        release_locked();
        unloaded.store(true);
        set_error("the model was unloaded: memory use exceeded the limit of " + fmt_mib(limit.load()));
    }
}

void pressure_safe_point(Engine* e) noexcept {
    if (e == nullptr || !e->pressure_check_pending.load() || e->freed.load()) return;
    guard_quiet("memory pressure check", [e] { e->check_pressure(); });
}

void pressure_safe_point(ev_context ctx) noexcept {
    if (ctx == nullptr || ctx->magic.load() != kContextMagic || !ctx->engine || ctx->inherited()) return;
    pressure_safe_point(ctx->engine.get());
}

}  // namespace ev

using ev::Engine;
using ev::fail;

extern "C" {

static void ev_config_default_impl(ev_config* config) {
    if (config == nullptr) return;
    memset(config, 0, sizeof *config);
    config->model_path = nullptr;
    config->backend = EV_BACKEND_AUTO;
    config->num_threads = 0;
    config->context_size = 2048;
    config->batch_size = 512;
    config->memory_limit_bytes = 0;
    config->auto_unload_on_memory_pressure = true;
    config->gpu_layers = -1;
    config->use_mmap = true;
    config->use_mlock = false;
    config->seed = -1;
    config->flash_attn = -1;
    config->kv_cache_type_k = GGML_TYPE_F16;
    config->kv_cache_type_v = GGML_TYPE_F16;
    config->reserved = nullptr;
}

static ev_context ev_init_with_progress_impl(const ev_config* config, ev_load_progress_callback progress,
                                        void* user_data, ev_error_t* error) {
    ev_error_t dummy;
    if (error == nullptr) error = &dummy;
    *error = EV_SUCCESS;
    {
        if ((*error = ev::validate_config(config)) != EV_SUCCESS) return nullptr;
        const std::string path = config->model_path;

        // Backend choice. The backend gates availability; offload is gpu_layers.
        // AUTO is the fallback: Metal or Vulkan when a device is there, else CPU.
        // An explicit GPU backend that cannot run fails, saying why.
        ev_backend_t backend = config->backend;
        if (backend == EV_BACKEND_AUTO) backend = ev_detect_backend();
        if (!ev::backend_compiled_in(backend)) {
            *error = fail(EV_ERROR_UNSUPPORTED_BACKEND,
                          std::string("backend ") + ev_backend_name(backend) +
                              " is not compiled into this build (EDGEVEDA_BACKEND=" EDGEVEDA_BACKEND_NAME
                              "); rebuild with EDGEVEDA_BACKEND=" +
                              (backend == EV_BACKEND_METAL ? "metal (macOS only)" : "vulkan") +
                              ", or use backend AUTO or CPU");
            return nullptr;
        }
        if (!ev_is_backend_available(backend)) {
            *error = fail(EV_ERROR_UNSUPPORTED_BACKEND,
                          std::string("backend ") + ev_backend_name(backend) +
                              " is compiled in but no " + ev_backend_name(backend) +
                              " device was found on this machine" +
                              (backend == EV_BACKEND_VULKAN
                                   ? " (check the Vulkan driver, e.g. mesa-vulkan-drivers, and "
                                     "GGML_VK_VISIBLE_DEVICES; a CPU-type device such as lavapipe is "
                                     "only used when GGML_VK_VISIBLE_DEVICES names it)"
                                   : "") +
                              "; use backend AUTO or CPU to run on the CPU");
            return nullptr;
        }
        int gpu_layers = backend == EV_BACKEND_CPU ? 0 : config->gpu_layers;

        std::string bad = ev::check_gguf_file(path);
        if (!bad.empty()) {
            bool oom = ev::looks_like_alloc_failure(bad);  // e.g. mapping the file under ulimit -v
            *error = fail(oom ? EV_ERROR_OUT_OF_MEMORY : EV_ERROR_MODEL_LOAD_FAILED,
                          std::string(oom ? "out of memory: " : "") + "cannot load model '" + path + "': " + bad);
            return nullptr;
        }

        auto engine = std::make_shared<Engine>();
        Engine* e = engine.get();
        e->config = *config;
        e->model_path = path;
        e->config.model_path = nullptr;  // not ours; do not keep the caller's pointer
        e->config.reserved = nullptr;    // the caller's ev_config_extras: read above, not kept
        e->n_threads = config->num_threads > 0 ? config->num_threads : ev::default_thread_count();
        e->limit.store(config->memory_limit_bytes);

        ev::backend_acquire();
        struct Releaser {
            bool armed = true;
            ~Releaser() { if (armed) ev::backend_release(); }
        } releaser;

        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers = gpu_layers < 0 ? 999 : gpu_layers;
        // CPU in a GPU build: no GPU device at all (no offloaded ops, no GPU
        // host buffers); a GPU backend: that backend's devices only.
        std::vector<ggml_backend_dev_t> devices;
        if (backend != EV_BACKEND_CPU) devices = ev::gpu_devices(backend);
        devices.push_back(nullptr);
        mp.devices = devices.data();
        {
            std::string msg = std::string("edgeveda: backend ") + ev_backend_name(backend) +
                              (config->backend == EV_BACKEND_AUTO ? " (chosen by AUTO)" : "");
            for (size_t i = 0; i + 1 < devices.size(); ++i) {
                msg += std::string(i ? ", " : ", device ") + ggml_backend_dev_name(devices[i]) + " (" +
                       ggml_backend_dev_description(devices[i]) + ")";
            }
            msg += ", gpu_layers " + std::to_string(gpu_layers) + "\n";
            ev::log_info(msg);
        }
        mp.load_mode = config->use_mmap ? (config->use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP)
                                         : (config->use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE);
        // The CPU's extra buffer types (AMX, CPU_REPACK): ev_config_extras, on by default.
        mp.use_extra_bufts = config->reserved == nullptr ||
                             static_cast<const ev_config_extras*>(config->reserved)->cpu_extra_buffers != 0;
        if (!mp.use_extra_bufts) ev::log_info("edgeveda: cpu extra buffer types off (weights in plain CPU buffers)\n");

        llama_context_params cp = llama_context_default_params();
        cp.n_batch = static_cast<uint32_t>(config->batch_size);
        cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
        cp.n_threads = e->n_threads;
        cp.n_threads_batch = e->n_threads;
        cp.n_seq_max = 1;
        cp.no_perf = true;
        cp.type_k = static_cast<ggml_type>(config->kv_cache_type_k);
        cp.type_v = static_cast<ggml_type>(config->kv_cache_type_v);
        cp.flash_attn_type = config->flash_attn < 0   ? LLAMA_FLASH_ATTN_TYPE_AUTO
                             : config->flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                                       : LLAMA_FLASH_ATTN_TYPE_ENABLED;
        cp.abort_callback = ev::abort_cb;
        cp.abort_callback_data = e;

        ev::LogCapture capture;

        // The memory limit, and what the process may still allocate, are
        // checked before anything is allocated: a dry run (no_alloc) computes
        // the exact buffers llama.cpp would create (memory_fit.cpp).
        std::string headroom_from;
        const size_t headroom = ev::memory_headroom(&headroom_from);
        const size_t file_bytes = ev::file_size(path);
        // (host memory: a GPU backend's buffers live elsewhere)
        const bool tight = gpu_layers == 0 && headroom < 2 * file_bytes + (size_t(1) << 30);
        if (config->memory_limit_bytes > 0 || tight) {
            llama_model_params dry = mp;
            dry.no_alloc = true;
            dry.load_mode = LLAMA_LOAD_MODE_NONE;
            llama_model* dm = llama_model_load_from_file(path.c_str(), dry);
            if (dm == nullptr) {
                std::string said = capture.text();
                bool oom = ev::looks_like_alloc_failure(said);
                *error = fail(oom ? EV_ERROR_OUT_OF_MEMORY : EV_ERROR_MODEL_LOAD_FAILED,
                              std::string(oom ? "out of memory: " : "") + "cannot load model '" + path +
                                  "': llama.cpp said: " + said);
                return nullptr;
            }
            llama_context_params dcp = cp;
            int train = llama_model_n_ctx_train(dm);
            dcp.n_ctx = config->context_size > 0 ? static_cast<uint32_t>(config->context_size) : train;
            llama_context* dc = (config->context_size <= train) ? llama_init_from_model(dm, dcp) : nullptr;
            size_t need = 0;
            if (dc != nullptr) {
                for (const auto& kv : llama_get_memory_breakdown(dc)) need += kv.second.total();
                llama_free(dc);
            }
            llama_model_free(dm);
            // the OpenMP workers' stacks (8 MiB each, and libgomp exits the
            // process when it cannot start one) and what the load needs beside
            // its buffers
            const size_t margin = (size_t(16) << 20) * static_cast<size_t>(e->n_threads) + (size_t(32) << 20);
            if (dc != nullptr && tight && need + margin > headroom) {
                *error = fail(EV_ERROR_OUT_OF_MEMORY,
                              "out of memory: model '" + path + "' with a context of " + std::to_string(dcp.n_ctx) +
                                  " tokens needs " + ev::fmt_mib(need + margin) + " (buffers " + ev::fmt_mib(need) +
                                  ", threads and overhead " + ev::fmt_mib(margin) + ") but only " +
                                  ev::fmt_mib(headroom) + " can be allocated, by " + headroom_from);
                return nullptr;
            }
            if (config->memory_limit_bytes > 0 && need > config->memory_limit_bytes) {
                *error = fail(EV_ERROR_MEMORY_LIMIT_EXCEEDED,
                              "model '" + path + "' with a context of " + std::to_string(dcp.n_ctx) +
                                  " tokens needs " + ev::fmt_mib(need) + " (" + std::to_string(need) +
                                  " bytes) but memory_limit_bytes is " +
                                  std::to_string(config->memory_limit_bytes));
                return nullptr;
            }
        }

        ev::ProgressBridge bridge{progress, user_data};
        if (progress != nullptr) {
            mp.progress_callback = ev::progress_bridge;
            mp.progress_callback_user_data = &bridge;
        }
        e->model = llama_model_load_from_file(path.c_str(), mp);
        if (e->model == nullptr) {
            if (bridge.aborted) {
                *error = fail(EV_ERROR_MODEL_LOAD_FAILED, "loading model '" + path + "' was cancelled by the progress callback");
            } else {
                std::string said = capture.text();
                bool oom = ev::looks_like_alloc_failure(said);
                *error = fail(oom ? EV_ERROR_OUT_OF_MEMORY : EV_ERROR_MODEL_LOAD_FAILED,
                              std::string(oom ? "out of memory: " : "") + "cannot load model '" + path + "'" +
                                  (said.empty() ? "" : ": llama.cpp said: " + said));
            }
            return nullptr;
        }
        e->vocab = llama_model_get_vocab(e->model);

        int train = llama_model_n_ctx_train(e->model);
        if (config->context_size > train && train > 0) {
            llama_model_free(e->model);
            e->model = nullptr;
            *error = fail(EV_ERROR_INVALID_PARAM,
                          "config.context_size " + std::to_string(config->context_size) +
                              " is above the model's training context of " + std::to_string(train));
            return nullptr;
        }
        cp.n_ctx = config->context_size > 0 ? static_cast<uint32_t>(config->context_size) : 0;
        e->lctx = llama_init_from_model(e->model, cp);
        if (e->lctx == nullptr) {
            std::string said = capture.text();
            llama_model_free(e->model);
            e->model = nullptr;
            bool oom = ev::looks_like_alloc_failure(said);
            *error = fail(oom ? EV_ERROR_OUT_OF_MEMORY : EV_ERROR_BACKEND_INIT_FAILED,
                          std::string(oom ? "out of memory: " : "") + "cannot create a llama.cpp context for '" +
                              path + "'" + (said.empty() ? "" : ": llama.cpp said: " + said));
            return nullptr;
        }
        e->name = ev::meta_string(e->model, "general.name");
        if (e->name.empty()) {
            char buf[256];
            llama_model_desc(e->model, buf, sizeof buf);
            e->name = buf;
        }
        e->arch = ev::meta_string(e->model, "general.architecture");
        e->refresh_memory_locked();
        e->buffer_types = ev::weight_buffer_types(e->lctx);  // ev_model_buffer_types

        auto* ctx = new (std::nothrow) ev_context_impl();
        if (ctx == nullptr) {
            std::lock_guard<std::mutex> lock(e->mutex);
            e->release_locked();
            *error = fail(EV_ERROR_OUT_OF_MEMORY, "out of memory allocating the context");
            return nullptr;
        }
        ctx->engine = std::move(engine);
        releaser.armed = false;  // released by ev_free
        ev::set_thread_error("");
        // A limit at or near the use from the start is reported at once, on
        // the calling thread (the entry point's safe point).
        ctx->engine->pressure_check_pending.store(config->memory_limit_bytes != 0);
        return ctx;
    }
}

static void ev_free_impl(ev_context ctx) {
    if (ctx == nullptr || ctx->magic.load() != ev::kContextMagic) return;
    ctx->magic.store(ev::kDeadMagic);
    if (ctx->inherited()) {
        // A fork()ed child's copy of the parent's context: its locks may be
        // held by threads that do not exist here, and llama.cpp's buffers are
        // the parent's (copy-on-write). Forget it without touching anything:
        // the copy is released when this process exits or execs.
        return;
    }
    std::shared_ptr<Engine> e = std::move(ctx->engine);
    if (e) {
        e->freed.store(true);
        e->cancel_requested.store(true);  // a stream still running stops at once
        {
            std::lock_guard<std::mutex> lock(e->mutex);
            bool had_model = e->model != nullptr || e->unloaded.load();
            e->release_locked();
            if (had_model) ev::backend_release();
        }
        std::lock_guard<std::mutex> lock(e->callback_mutex);
        e->pressure_cb = nullptr;
        e->pressure_ud = nullptr;
    }
    delete ctx;
}

static bool ev_is_valid_impl(ev_context ctx) {
    if (ctx == nullptr || ctx->magic.load() != ev::kContextMagic || !ctx->engine) return false;
    if (ctx->inherited()) return false;
    return !ctx->engine->unloaded.load() && !ctx->engine->freed.load();
}

static ev_error_t ev_get_model_info_impl(ev_context ctx, ev_model_info* info) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code);
    if (!e) return code;
    if (info == nullptr) {
        e->set_error("ev_get_model_info: info is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    std::lock_guard<std::mutex> lock(e->mutex);
    if (e->model == nullptr) {
        e->set_error("the model is not loaded");
        return EV_ERROR_CONTEXT_INVALID;
    }
    memset(info, 0, sizeof *info);
    info->name = e->name.c_str();
    info->architecture = e->arch.c_str();
    info->num_parameters = llama_model_n_params(e->model);
    // the configured size (llama.cpp pads n_ctx up to a multiple of 256)
    info->context_length = static_cast<int>(llama_n_ctx(e->lctx));
    if (e->config.context_size > 0 && e->config.context_size < info->context_length) {
        info->context_length = e->config.context_size;
    }
    info->embedding_dim = llama_model_n_embd(e->model);
    info->num_layers = llama_model_n_layer(e->model);
    return EV_SUCCESS;
}

static ev_error_t ev_get_memory_usage_impl(ev_context ctx, ev_memory_stats* stats) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code, /*need_model=*/false);
    if (!e) return code;
    if (stats == nullptr) {
        e->set_error("ev_get_memory_usage: stats is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    memset(stats, 0, sizeof *stats);
    stats->current_bytes = e->current.load();
    stats->peak_bytes = e->peak.load();
    stats->limit_bytes = e->limit.load();
    stats->model_bytes = e->model_bytes.load();
    stats->context_bytes = e->context_bytes.load();
    return EV_SUCCESS;
}

static ev_error_t ev_set_memory_limit_impl(ev_context ctx, size_t limit_bytes) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code, /*need_model=*/false);
    if (!e) return code;
    e->limit.store(limit_bytes);
    if (e->busy.load() || e->active_stream.load() != nullptr) {
        // The generating thread checks at the end of its call (a safe point).
        e->pressure_check_pending.store(true);
    } else {
        e->check_pressure();
    }
    return EV_SUCCESS;
}

static ev_error_t ev_set_memory_pressure_callback_impl(ev_context ctx, ev_memory_pressure_callback callback,
                                                  void* user_data) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code, /*need_model=*/false);
    if (!e) return code;
    std::lock_guard<std::mutex> lock(e->callback_mutex);
    e->pressure_cb = callback;
    e->pressure_ud = callback ? user_data : nullptr;
    return EV_SUCCESS;
}

static ev_error_t ev_memory_cleanup_impl(ev_context ctx) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code);
    if (!e) return code;
    if (e->active_stream.load() != nullptr) {
        e->set_error("ev_memory_cleanup: a stream is active; free it first");
        return EV_ERROR_CONTEXT_INVALID;
    }
    std::lock_guard<std::mutex> lock(e->mutex);
    if (e->lctx) llama_memory_clear(llama_get_memory(e->lctx), true);
    if (e->embed_ctx) {
        llama_free(e->embed_ctx);
        e->embed_ctx = nullptr;
    }
    e->cached_tokens.clear();
    e->refresh_memory_locked();
    return EV_SUCCESS;
}

static ev_error_t ev_reset_impl(ev_context ctx) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code);
    if (!e) return code;
    if (e->active_stream.load() != nullptr) {
        e->set_error("ev_reset: a stream is active; free it first");
        return EV_ERROR_CONTEXT_INVALID;
    }
    std::lock_guard<std::mutex> lock(e->mutex);
    if (e->lctx) llama_memory_clear(llama_get_memory(e->lctx), true);
    if (e->embed_ctx) llama_memory_clear(llama_get_memory(e->embed_ctx), true);
    e->cached_tokens.clear();
    e->last_stats = ev_generation_stats{};
    return EV_SUCCESS;
}

static ev_error_t ev_set_prompt_cache_impl(ev_context ctx, bool enabled) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code);
    if (!e) return code;
    std::lock_guard<std::mutex> lock(e->mutex);
    e->prompt_cache = enabled;
    if (!enabled) {
        if (e->lctx) llama_memory_clear(llama_get_memory(e->lctx), true);
        e->cached_tokens.clear();
    }
    return EV_SUCCESS;
}

// ---- entry points ----

EV_API void ev_config_default(ev_config* config) {
    ev::guard_quiet("ev_config_default", [&] { ev_config_default_impl(config); });
}

EV_API ev_context ev_init_with_progress(const ev_config* config, ev_load_progress_callback progress,
                                        void* user_data, ev_error_t* error) {
    ev_context ctx = ev::guard_out_compute("ev_init", EV_ERROR_MODEL_LOAD_FAILED, nullptr, ev_context{nullptr}, error,
                                 [&] { return ev_init_with_progress_impl(config, progress, user_data, error); });
    ev::pressure_safe_point(ctx);
    return ctx;
}

EV_API ev_context ev_init(const ev_config* config, ev_error_t* error) {
    return ev_init_with_progress(config, nullptr, nullptr, error);
}

EV_API void ev_free(ev_context ctx) {
    ev::guard_quiet("ev_free", [&] { ev_free_impl(ctx); });
}

EV_API bool ev_is_valid(ev_context ctx) {
    return ev::guard_quiet("ev_is_valid", false, [&] { return ev_is_valid_impl(ctx); });
}

EV_API ev_error_t ev_get_model_info(ev_context ctx, ev_model_info* info) {
    return ev::guard("ev_get_model_info", EV_ERROR_UNKNOWN, ctx, [&] { return ev_get_model_info_impl(ctx, info); });
}

EV_API ev_error_t ev_get_memory_usage(ev_context ctx, ev_memory_stats* stats) {
    return ev::guard("ev_get_memory_usage", EV_ERROR_UNKNOWN, ctx, [&] { return ev_get_memory_usage_impl(ctx, stats); });
}

EV_API ev_error_t ev_set_memory_limit(ev_context ctx, size_t limit_bytes) {
    return ev::guard("ev_set_memory_limit", EV_ERROR_UNKNOWN, ctx,
                     [&] { return ev_set_memory_limit_impl(ctx, limit_bytes); });
}

EV_API ev_error_t ev_set_memory_pressure_callback(ev_context ctx, ev_memory_pressure_callback callback,
                                                  void* user_data) {
    return ev::guard("ev_set_memory_pressure_callback", EV_ERROR_UNKNOWN, ctx,
                     [&] { return ev_set_memory_pressure_callback_impl(ctx, callback, user_data); });
}

EV_API ev_error_t ev_memory_cleanup(ev_context ctx) {
    return ev::guard("ev_memory_cleanup", EV_ERROR_UNKNOWN, ctx, [&] { return ev_memory_cleanup_impl(ctx); });
}

EV_API ev_error_t ev_reset(ev_context ctx) {
    return ev::guard("ev_reset", EV_ERROR_UNKNOWN, ctx, [&] { return ev_reset_impl(ctx); });
}

EV_API ev_error_t ev_set_prompt_cache(ev_context ctx, bool enabled) {
    return ev::guard("ev_set_prompt_cache", EV_ERROR_UNKNOWN, ctx, [&] { return ev_set_prompt_cache_impl(ctx, enabled); });
}

}  // extern "C"

// Creating a context: ev_config_default and ev_init, one named step each
// (validate the config, choose the backend, check the file, llama.cpp's
// parameters, the memory-fit check, load the model, create the context).
#include "ev_internal.h"
#include "guard.h"

#include <algorithm>
#include <cstring>
#include <new>

namespace ev {

namespace {

ev_error_t validate_config(const ev_config* c) {
    if (c == nullptr) return fail(EV_ERROR_INVALID_PARAM, "config is NULL");
    if (c->model_path == nullptr) return fail(EV_ERROR_INVALID_PARAM, "config.model_path is NULL");
    if (c->model_path[0] == '\0') return fail(EV_ERROR_INVALID_PARAM, "config.model_path is empty");
    // Read the enum as its bits: in C++ loading an out-of-range value through
    // the enum type is undefined (UBSan: "not a valid value for type").
    int backend = enum_bits(c->backend);
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

// The backend gates availability; offload is gpu_layers. AUTO is the
// fallback: Metal or Vulkan when a device is there, else CPU. An explicit
// GPU backend that cannot run fails, saying why.
ev_error_t choose_backend(const ev_config* config, ev_backend_t* out, int* gpu_layers) {
    ev_backend_t backend = config->backend;
    if (backend == EV_BACKEND_AUTO) backend = ev_detect_backend();
    if (!backend_compiled_in(backend)) {
        return fail(EV_ERROR_UNSUPPORTED_BACKEND,
                    std::string("backend ") + ev_backend_name(backend) +
                        " is not compiled into this build (EDGEVEDA_BACKEND=" EDGEVEDA_BACKEND_NAME
                        "); rebuild with EDGEVEDA_BACKEND=" +
                        (backend == EV_BACKEND_METAL ? "metal (macOS only)" : "vulkan") +
                        ", or use backend AUTO or CPU");
    }
    if (!ev_is_backend_available(backend)) {
        return fail(EV_ERROR_UNSUPPORTED_BACKEND,
                    std::string("backend ") + ev_backend_name(backend) + " is compiled in but no " +
                        ev_backend_name(backend) + " device was found on this machine" +
                        (backend == EV_BACKEND_VULKAN
                             ? " (check the Vulkan driver, e.g. mesa-vulkan-drivers, and "
                               "GGML_VK_VISIBLE_DEVICES; a CPU-type device such as lavapipe is "
                               "only used when GGML_VK_VISIBLE_DEVICES names it)"
                             : "") +
                        "; use backend AUTO or CPU to run on the CPU");
    }
    *out = backend;
    *gpu_layers = backend == EV_BACKEND_CPU ? 0 : config->gpu_layers;
    return EV_SUCCESS;
}

// Before llama.cpp sees the file (gguf_check.cpp).
ev_error_t check_model_file(const std::string& path) {
    std::string bad = check_gguf_file(path);
    if (bad.empty()) return EV_SUCCESS;
    bool oom = looks_like_alloc_failure(bad);  // e.g. mapping the file under ulimit -v
    return fail(oom ? EV_ERROR_OUT_OF_MEMORY : EV_ERROR_MODEL_LOAD_FAILED,
                std::string(oom ? "out of memory: " : "") + "cannot load model '" + path + "': " + bad);
}

std::shared_ptr<Engine> new_engine(const ev_config* config, const std::string& path) {
    auto engine = std::make_shared<Engine>();
    Engine* e = engine.get();
    e->config = *config;
    e->model_path = path;
    e->config.model_path = nullptr;  // not ours; do not keep the caller's pointer
    e->config.reserved = nullptr;    // the caller's ev_config_extras: read above, not kept
    e->n_threads = config->num_threads > 0 ? config->num_threads : default_thread_count();
    e->limit.store(config->memory_limit_bytes);
    return engine;
}

// llama.cpp's model parameters; *devices is the NULL-terminated device list
// they point to. Logs the choice.
llama_model_params model_params(const ev_config* config, ev_backend_t backend, int gpu_layers,
                                std::vector<ggml_backend_dev_t>* devices) {
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = gpu_layers < 0 ? 999 : gpu_layers;
    // CPU in a GPU build: no GPU device at all (no offloaded ops, no GPU
    // host buffers); a GPU backend: that backend's devices only.
    devices->clear();
    if (backend != EV_BACKEND_CPU) *devices = gpu_devices(backend);
    devices->push_back(nullptr);
    mp.devices = devices->data();
    std::string msg = std::string("edgeveda: backend ") + ev_backend_name(backend) +
                      (config->backend == EV_BACKEND_AUTO ? " (chosen by AUTO)" : "");
    for (size_t i = 0; i + 1 < devices->size(); ++i) {
        msg += std::string(i ? ", " : ", device ") + ggml_backend_dev_name((*devices)[i]) + " (" +
               ggml_backend_dev_description((*devices)[i]) + ")";
    }
    msg += ", gpu_layers " + std::to_string(gpu_layers) + "\n";
    log_info(msg);
    mp.load_mode = config->use_mmap ? (config->use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP)
                                    : (config->use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE);
    // The CPU's extra buffer types (AMX, CPU_REPACK): ev_config_extras, on by default.
    mp.use_extra_bufts = config->reserved == nullptr ||
                         static_cast<const ev_config_extras*>(config->reserved)->cpu_extra_buffers != 0;
    if (!mp.use_extra_bufts) log_info("edgeveda: cpu extra buffer types off (weights in plain CPU buffers)\n");
    return mp;
}

bool abort_cb(void* data) {
    return static_cast<Engine*>(data)->cancel_requested.load(std::memory_order_relaxed);
}

llama_context_params context_params(const ev_config* config, Engine* e) {
    llama_context_params cp = llama_context_default_params();
    cp.n_batch = static_cast<uint32_t>(config->batch_size);
    cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
    cp.n_threads = e->n_threads;
    cp.n_threads_batch = e->n_threads;
    cp.n_seq_max = 1;
    cp.no_perf = true;
    cp.type_k = static_cast<ggml_type>(config->kv_cache_type_k);
    cp.type_v = static_cast<ggml_type>(config->kv_cache_type_v);
    cp.flash_attn_type = config->flash_attn < 0    ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : config->flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                                   : LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.abort_callback = abort_cb;
    cp.abort_callback_data = e;
    return cp;
}

// What a failed llama.cpp call said, as the error for `what`.
ev_error_t llama_failure(ev_error_t code, const std::string& what, const LogCapture& capture) {
    std::string said = capture.text();
    bool oom = looks_like_alloc_failure(said);
    return fail(oom ? EV_ERROR_OUT_OF_MEMORY : code,
                std::string(oom ? "out of memory: " : "") + what + (said.empty() ? "" : ": llama.cpp said: " + said));
}

// The memory limit, and what the process may still allocate, are checked
// before anything is allocated: a dry run (no_alloc) computes the buffers
// llama.cpp would create (memory.cpp: buffer_bytes).
ev_error_t check_memory_fit(const ev_config* config, const std::string& path, const llama_model_params& mp,
                            const llama_context_params& cp, int gpu_layers, int n_threads,
                            const LogCapture& capture) {
    std::string headroom_from;
    const size_t headroom = memory_headroom(&headroom_from);
    const size_t file_bytes = file_size(path);
    // (host memory: a GPU backend's buffers live elsewhere)
    const bool tight = gpu_layers == 0 && headroom < 2 * file_bytes + (size_t(1) << 30);
    if (config->memory_limit_bytes == 0 && !tight) return EV_SUCCESS;
    llama_model_params dry = mp;
    dry.no_alloc = true;
    dry.load_mode = LLAMA_LOAD_MODE_NONE;
    llama_model* dm = llama_model_load_from_file(path.c_str(), dry);
    if (dm == nullptr) {
        std::string said = capture.text();
        bool oom = looks_like_alloc_failure(said);
        return fail(oom ? EV_ERROR_OUT_OF_MEMORY : EV_ERROR_MODEL_LOAD_FAILED,
                    std::string(oom ? "out of memory: " : "") + "cannot load model '" + path +
                        "': llama.cpp said: " + said);
    }
    llama_context_params dcp = cp;
    int train = llama_model_n_ctx_train(dm);
    dcp.n_ctx = config->context_size > 0 ? static_cast<uint32_t>(config->context_size) : train;
    llama_context* dc = (config->context_size <= train) ? llama_init_from_model(dm, dcp) : nullptr;
    size_t need = 0;
    if (dc != nullptr) {
        need = buffer_bytes(dc).total();
        llama_free(dc);
    }
    llama_model_free(dm);
    // the OpenMP workers' stacks (8 MiB each, and libgomp exits the process
    // when it cannot start one) and what the load needs beside its buffers
    const size_t margin = (size_t(16) << 20) * static_cast<size_t>(n_threads) + (size_t(32) << 20);
    if (dc != nullptr && tight && need + margin > headroom) {
        return fail(EV_ERROR_OUT_OF_MEMORY,
                    "out of memory: model '" + path + "' with a context of " + std::to_string(dcp.n_ctx) +
                        " tokens needs " + fmt_mib(need + margin) + " (buffers " + fmt_mib(need) +
                        ", threads and overhead " + fmt_mib(margin) + ") but only " + fmt_mib(headroom) +
                        " can be allocated, by " + headroom_from);
    }
    if (config->memory_limit_bytes > 0 && need > config->memory_limit_bytes) {
        return fail(EV_ERROR_MEMORY_LIMIT_EXCEEDED,
                    "model '" + path + "' with a context of " + std::to_string(dcp.n_ctx) + " tokens needs " +
                        fmt_mib(need) + " (" + std::to_string(need) + " bytes) but memory_limit_bytes is " +
                        std::to_string(config->memory_limit_bytes));
    }
    return EV_SUCCESS;
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

ev_error_t load_model(Engine* e, const std::string& path, llama_model_params mp, ev_load_progress_callback progress,
                      void* user_data, const LogCapture& capture) {
    ProgressBridge bridge{progress, user_data};
    if (progress != nullptr) {
        mp.progress_callback = progress_bridge;
        mp.progress_callback_user_data = &bridge;
    }
    e->model = llama_model_load_from_file(path.c_str(), mp);
    if (e->model == nullptr) {
        if (bridge.aborted) {
            return fail(EV_ERROR_MODEL_LOAD_FAILED, "loading model '" + path + "' was cancelled by the progress callback");
        }
        return llama_failure(EV_ERROR_MODEL_LOAD_FAILED, "cannot load model '" + path + "'", capture);
    }
    e->vocab = llama_model_get_vocab(e->model);
    return EV_SUCCESS;
}

// On failure the model is freed again.
ev_error_t create_context(Engine* e, const ev_config* config, llama_context_params cp, const LogCapture& capture) {
    int train = llama_model_n_ctx_train(e->model);
    if (config->context_size > train && train > 0) {
        llama_model_free(e->model);
        e->model = nullptr;
        return fail(EV_ERROR_INVALID_PARAM, "config.context_size " + std::to_string(config->context_size) +
                                                " is above the model's training context of " + std::to_string(train));
    }
    cp.n_ctx = config->context_size > 0 ? static_cast<uint32_t>(config->context_size) : 0;
    e->lctx = llama_init_from_model(e->model, cp);
    if (e->lctx == nullptr) {
        ev_error_t code = llama_failure(EV_ERROR_BACKEND_INIT_FAILED,
                                        "cannot create a llama.cpp context for '" + e->model_path + "'", capture);
        llama_model_free(e->model);
        e->model = nullptr;
        return code;
    }
    return EV_SUCCESS;
}

std::string meta_string(const llama_model* model, const char* key) {
    char buf[512];
    int32_t n = llama_model_meta_val_str(model, key, buf, sizeof buf);
    if (n < 0) return "";
    return std::string(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

// What ev_get_model_info and ev_model_buffer_types report, and the first
// memory figures.
void describe_model(Engine* e) {
    e->name = meta_string(e->model, "general.name");
    if (e->name.empty()) {
        char buf[256];
        llama_model_desc(e->model, buf, sizeof buf);
        e->name = buf;
    }
    e->arch = meta_string(e->model, "general.architecture");
    e->refresh_memory_locked();
    e->buffer_types = weight_buffer_types(e->lctx);  // ev_model_buffer_types
}

}  // namespace

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
    if ((*error = ev::validate_config(config)) != EV_SUCCESS) return nullptr;
    if ((*error = ev::cpu_backend_load()) != EV_SUCCESS) return nullptr;
    const std::string path = config->model_path;
    ev_backend_t backend;
    int gpu_layers;
    if ((*error = ev::choose_backend(config, &backend, &gpu_layers)) != EV_SUCCESS) return nullptr;
    if ((*error = ev::check_model_file(path)) != EV_SUCCESS) return nullptr;

    std::shared_ptr<Engine> engine = ev::new_engine(config, path);
    Engine* e = engine.get();
    ev::backend_acquire();
    struct Releaser {
        bool armed = true;
        ~Releaser() { if (armed) ev::backend_release(); }
    } releaser;

    std::vector<ggml_backend_dev_t> devices;
    const llama_model_params mp = ev::model_params(config, backend, gpu_layers, &devices);
    const llama_context_params cp = ev::context_params(config, e);
    ev::LogCapture capture;
    if ((*error = ev::check_memory_fit(config, path, mp, cp, gpu_layers, e->n_threads, capture)) != EV_SUCCESS) {
        return nullptr;
    }
    if ((*error = ev::load_model(e, path, mp, progress, user_data, capture)) != EV_SUCCESS) return nullptr;
    if ((*error = ev::create_context(e, config, cp, capture)) != EV_SUCCESS) return nullptr;
    ev::describe_model(e);

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
    // A limit at or near the use from the start is reported at once, on the
    // calling thread (the entry point's safe point).
    ctx->engine->pressure_check_pending.store(config->memory_limit_bytes != 0);
    *error = EV_SUCCESS;
    return ctx;
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

}  // extern "C"

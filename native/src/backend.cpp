// Backends: what this build and machine offer, and the refcounted
// llama_backend_init/free shared by all contexts.
#include "ev_internal.h"
#include "guard.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cstring>
#include <thread>

namespace {
std::mutex g_backend_mutex;
int g_backend_refs = 0;

// The GPU devices ggml registered for backend b (its registry is "Vulkan" or
// "MTL"). ggml enumerates devices once per process: a Vulkan build asks the
// driver on first use (lavapipe, a CPU-type device, only when
// GGML_VK_VISIBLE_DEVICES names it); a failed driver init registers none.
std::vector<ggml_backend_dev_t> gpu_devices_of(ev_backend_t b) {
    std::vector<ggml_backend_dev_t> out;
    const char* reg_name = b == EV_BACKEND_VULKAN ? "Vulkan" : b == EV_BACKEND_METAL ? "MTL" : nullptr;
    if (reg_name == nullptr || !ev::backend_compiled_in(b)) return out;
    ev::install_log_hook();
    (void)ev::cpu_backend_load();  // a CPU device is registered before any other
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        auto type = ggml_backend_dev_type(dev);
        ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
        if ((type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) && reg != nullptr &&
            strcmp(ggml_backend_reg_name(reg), reg_name) == 0) {
            out.push_back(dev);
        }
    }
    return out;
}
}  // namespace

namespace ev {

void backend_acquire() {
    std::lock_guard<std::mutex> lock(g_backend_mutex);
    if (g_backend_refs++ == 0) {
        install_log_hook();
        install_abort_hook();
        llama_backend_init();
    }
}

void backend_release() {
    std::lock_guard<std::mutex> lock(g_backend_mutex);
    if (g_backend_refs > 0 && --g_backend_refs == 0) {
        llama_backend_free();
    }
}

bool backend_compiled_in(ev_backend_t b) {
    switch (b) {
        case EV_BACKEND_AUTO:
        case EV_BACKEND_CPU:
            return true;
#if defined(EDGEVEDA_HAVE_METAL)
        case EV_BACKEND_METAL:
            return true;
#endif
#if defined(EDGEVEDA_HAVE_VULKAN)
        case EV_BACKEND_VULKAN:
            return true;
#endif
        default:
            return false;
    }
}

std::vector<ggml_backend_dev_t> gpu_devices(ev_backend_t b) { return gpu_devices_of(b); }

int default_thread_count() {
    unsigned hw = std::thread::hardware_concurrency();
    if (hw == 0) return 4;
    return static_cast<int>(std::min(hw, 8u));
}

}  // namespace ev

extern "C" {

static const char* ev_version_impl(void) { return EV_VERSION_STRING; }

static bool ev_is_backend_available_impl(int backend) {
    switch (backend) {
        case EV_BACKEND_AUTO:
        case EV_BACKEND_CPU:
            return ev::cpu_backend_load() == EV_SUCCESS;  // a CPU variant module may be refused
        case EV_BACKEND_METAL:
        case EV_BACKEND_VULKAN:
            // compiled in (EDGEVEDA_BACKEND=metal|vulkan) and a device found
            return !gpu_devices_of(static_cast<ev_backend_t>(backend)).empty();
        default:
            return false;
    }
}

static ev_backend_t ev_detect_backend_impl(void) {
    if (ev_is_backend_available(EV_BACKEND_METAL)) return EV_BACKEND_METAL;
    if (ev_is_backend_available(EV_BACKEND_VULKAN)) return EV_BACKEND_VULKAN;
    return EV_BACKEND_CPU;
}

static const char* ev_backend_name_impl(int backend) {
    switch (backend) {
        case EV_BACKEND_AUTO: return "Auto";
        case EV_BACKEND_METAL: return "Metal";
        case EV_BACKEND_VULKAN: return "Vulkan";
        case EV_BACKEND_CPU: return "CPU";
        default: return "Unknown";
    }
}

static const char* ev_llama_version_impl(void) {
    static std::string v = std::string(llama_version() ? llama_version() : "unknown") +
                           " (backend build: " EDGEVEDA_BACKEND_NAME ")";
    return v.c_str();
}

static const char* ev_system_info_impl(void) {
    ev::install_log_hook();
    (void)ev::cpu_backend_load();  // the CPU features come from the CPU backend
    return llama_print_system_info();
}

// ---- entry points ----

EV_API const char* ev_version(void) { return ev::guard_quiet("ev_version", "", [] { return ev_version_impl(); }); }

EV_API bool ev_is_backend_available(ev_backend_t backend) {
    int raw = ev::enum_bits(backend);
    return ev::guard_quiet("ev_is_backend_available", false, [raw] { return ev_is_backend_available_impl(raw); });
}

EV_API ev_backend_t ev_detect_backend(void) {
    return ev::guard_quiet("ev_detect_backend", EV_BACKEND_CPU, [] { return ev_detect_backend_impl(); });
}

EV_API const char* ev_backend_name(ev_backend_t backend) {
    int raw = ev::enum_bits(backend);
    return ev::guard_quiet("ev_backend_name", "Unknown", [raw] { return ev_backend_name_impl(raw); });
}

EV_API const char* ev_llama_version(void) {
    return ev::guard_quiet("ev_llama_version", "", [] { return ev_llama_version_impl(); });
}

EV_API const char* ev_system_info(void) {
    return ev::guard_quiet("ev_system_info", "", [] { return ev_system_info_impl(); });
}

}  // extern "C"

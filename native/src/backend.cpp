// Backends: what this build and machine offer, and the refcounted
// llama_backend_init/free shared by all contexts.
#include "ev_internal.h"

#include "ggml-backend.h"

#include <algorithm>
#include <thread>

namespace {
std::mutex g_backend_mutex;
int g_backend_refs = 0;

bool has_gpu_device() {
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        auto type = ggml_backend_dev_type(dev);
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) {
            return true;
        }
    }
    return false;
}
}  // namespace

namespace ev {

void backend_acquire() {
    std::lock_guard<std::mutex> lock(g_backend_mutex);
    if (g_backend_refs++ == 0) {
        install_log_hook();
        llama_backend_init();
    }
}

void backend_release() {
    std::lock_guard<std::mutex> lock(g_backend_mutex);
    if (g_backend_refs > 0 && --g_backend_refs == 0) {
        llama_backend_free();
    }
}

int default_thread_count() {
    unsigned hw = std::thread::hardware_concurrency();
    if (hw == 0) return 4;
    return static_cast<int>(std::min(hw, 8u));
}

}  // namespace ev

extern "C" {

EV_API const char* ev_version(void) { return EV_VERSION_STRING; }

EV_API bool ev_is_backend_available(ev_backend_t backend) {
    switch (backend) {
        case EV_BACKEND_AUTO:
        case EV_BACKEND_CPU:
            return true;
        case EV_BACKEND_METAL:
#if defined(EDGEVEDA_HAVE_METAL)
            ev::install_log_hook();
            return has_gpu_device();
#else
            return false;
#endif
        case EV_BACKEND_VULKAN:
#if defined(EDGEVEDA_HAVE_VULKAN)
            ev::install_log_hook();
            return has_gpu_device();
#else
            return false;
#endif
        default:
            return false;
    }
}

EV_API ev_backend_t ev_detect_backend(void) {
    if (ev_is_backend_available(EV_BACKEND_METAL)) return EV_BACKEND_METAL;
    if (ev_is_backend_available(EV_BACKEND_VULKAN)) return EV_BACKEND_VULKAN;
    return EV_BACKEND_CPU;
}

EV_API const char* ev_backend_name(ev_backend_t backend) {
    switch (backend) {
        case EV_BACKEND_AUTO: return "Auto";
        case EV_BACKEND_METAL: return "Metal";
        case EV_BACKEND_VULKAN: return "Vulkan";
        case EV_BACKEND_CPU: return "CPU";
        default: return "Unknown";
    }
}

EV_API const char* ev_llama_version(void) {
    static std::string v = std::string(llama_version() ? llama_version() : "unknown") +
                           " (backend build: " EDGEVEDA_BACKEND_NAME ")";
    return v.c_str();
}

EV_API const char* ev_system_info(void) {
    ev::install_log_hook();
    return llama_print_system_info();
}

}  // extern "C"

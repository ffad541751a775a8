// The CPU backend of a build with CPU variants (EDGEVEDA_CPU_VARIANTS=1, the
// portable wheel): ggml's CPU backend is built once per CPU level as a module
// (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) and one of them is loaded here, at
// the first call that needs a backend. A source build has it compiled in and
// only reports its name.
//
// Why our own choice instead of ggml_backend_load_all(): ggml looks beside the
// executable (python3's folder, not ours), falls back silently, and says
// nothing about what it loaded. Here the folder is beside the library that
// holds this core, $EDGEVEDA_CPU_VARIANT forces a variant, and every failure
// is a code plus a message that names the file. The CPU check is the module's
// own ggml_backend_score(), which runs before any of its vector code, so a
// variant this CPU cannot execute is refused, never run.
#include "ev_internal.h"
#include "guard.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#if defined(EDGEVEDA_CPU_VARIANT_LIST)
#include <dlfcn.h>
#include <sys/stat.h>
#endif

namespace {

std::vector<std::string> split_list(const char* list) {
    std::vector<std::string> out;
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

std::string requested_variant() {
    const char* env = std::getenv("EDGEVEDA_CPU_VARIANT");
    std::string v = env ? env : "";
    auto not_space = [](char c) { return c != ' ' && c != '\t' && c != '\n'; };
    while (!v.empty() && !not_space(v.back())) v.pop_back();
    size_t start = 0;
    while (start < v.size() && !not_space(v[start])) ++start;
    return v.substr(start);
}

// The decided outcome (once per process).
struct LoadState {
    std::mutex mutex;
    bool decided = false;
    ev_error_t code = EV_SUCCESS;
    std::string message;
    std::string variant;
};
LoadState& state() {
    static LoadState* s = new LoadState;  // never destroyed: other statics may still ask at exit
    return *s;
}

#if defined(EDGEVEDA_CPU_VARIANT_LIST)

const std::vector<std::string>& carried() {
    static const std::vector<std::string> v = split_list(EDGEVEDA_CPU_VARIANT_LIST);
    return v;
}

bool is_carried(const std::string& name) {
    for (const auto& v : carried()) {
        if (v == name) return true;
    }
    return false;
}

std::string module_dir() {
    const char* env = std::getenv("EDGEVEDA_CPU_VARIANT_DIR");
    if (env != nullptr && *env != '\0') return env;
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&ev_cpu_backend_load), &info) == 0 || info.dli_fname == nullptr) {
        return "cpu_variants";
    }
    std::string self = info.dli_fname;
    size_t slash = self.rfind('/');
    return (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/cpu_variants";
}

std::string module_path(const std::string& name) { return module_dir() + "/libggml-cpu-" + name + ".so"; }

bool file_exists(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The module's score (0: this CPU cannot execute it), or -1 with *why set.
// RTLD_LOCAL: the variants define the same symbols and must not mix.
int score_of(const std::string& path, std::string* why) {
    if (!file_exists(path)) {
        *why = "CPU variant module " + path + " is missing";
        return -1;
    }
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
        const char* err = dlerror();
        *why = "cannot load CPU variant module " + path + ": " + (err ? err : "unknown dlopen error");
        return -1;
    }
    using score_fn = int (*)(void);
    auto fn = reinterpret_cast<score_fn>(dlsym(handle, "ggml_backend_score"));
    int score = fn ? fn() : -1;
    if (fn == nullptr) *why = "CPU variant module " + path + " has no ggml_backend_score";
    dlclose(handle);
    return score;
}

std::string carried_text() {
    std::string out;
    for (const auto& v : carried()) out += (out.empty() ? "" : ", ") + v;
    return out;
}

ev_error_t decide(LoadState& s) {
    const std::string want = requested_variant();
    std::string chosen;
    if (!want.empty()) {
        if (!is_carried(want)) {
            s.message = "EDGEVEDA_CPU_VARIANT='" + want + "' is not a CPU variant of this build; it carries: " +
                        carried_text();
            return EV_ERROR_INVALID_PARAM;
        }
        std::string why;
        int score = score_of(module_path(want), &why);
        if (score < 0) {
            s.message = why + " (EDGEVEDA_CPU_VARIANT=" + want + "; reinstall edgeveda-ffi)";
            return EV_ERROR_BACKEND_INIT_FAILED;
        }
        if (score == 0) {
            s.message = "EDGEVEDA_CPU_VARIANT=" + want +
                        ": this CPU cannot execute that variant (it lacks an instruction set the variant "
                        "needs); unset EDGEVEDA_CPU_VARIANT to use the best one it can, or choose another of: " +
                        carried_text();
            return EV_ERROR_UNSUPPORTED_BACKEND;
        }
        chosen = want;
    } else {
        // Every carried module must be there: a missing one is a broken
        // installation, reported by name rather than silently run slower.
        int best = 0;
        for (const auto& name : carried()) {
            std::string why;
            int score = score_of(module_path(name), &why);
            if (score < 0) {
                s.message = why + " (the installation is incomplete: reinstall edgeveda-ffi, or set "
                                  "EDGEVEDA_CPU_VARIANT to a variant that is present)";
                return EV_ERROR_BACKEND_INIT_FAILED;
            }
            if (score > best) {
                best = score;
                chosen = name;
            }
        }
        if (chosen.empty()) {
            s.message = "no CPU variant of this build can run on this CPU (carried: " + carried_text() + ")";
            return EV_ERROR_UNSUPPORTED_BACKEND;
        }
    }
    const std::string path = module_path(chosen);
    ev::LogCapture capture;
    if (ggml_backend_load(path.c_str()) == nullptr) {
        s.message = "cannot register CPU variant module " + path + ": " + capture.text();
        return EV_ERROR_BACKEND_INIT_FAILED;
    }
    s.variant = chosen;
    ev::log_info("edgeveda: CPU variant " + chosen + " (" + path + ")\n");
    return EV_SUCCESS;
}

#else  // the CPU backend is compiled in

#if !defined(EDGEVEDA_CPU_BUILD_NAME)
#define EDGEVEDA_CPU_BUILD_NAME "native"
#endif

ev_error_t decide(LoadState& s) {
    const std::string want = requested_variant();
    if (!want.empty() && want != EDGEVEDA_CPU_BUILD_NAME) {
        s.message = "EDGEVEDA_CPU_VARIANT='" + want +
                    "': this build has its CPU backend compiled in (variant '" EDGEVEDA_CPU_BUILD_NAME
                    "') and carries no other variants; unset EDGEVEDA_CPU_VARIANT, or install the "
                    "portable wheel (EDGEVEDA_CPU_VARIANTS=1 build) to choose one";
        return EV_ERROR_INVALID_PARAM;
    }
    s.variant = EDGEVEDA_CPU_BUILD_NAME;
    return EV_SUCCESS;
}

#endif

}  // namespace

namespace ev {

ev_error_t cpu_backend_load() {
    LoadState& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.decided) {
        install_log_hook();
        s.code = decide(s);
        s.decided = true;
    }
    if (s.code != EV_SUCCESS) return fail(s.code, s.message);
    return EV_SUCCESS;
}

}  // namespace ev

extern "C" {

EV_API ev_error_t ev_cpu_backend_load(void) {
    return ev::guard("ev_cpu_backend_load", EV_ERROR_BACKEND_INIT_FAILED, nullptr,
                     [] { return ev::cpu_backend_load(); });
}

EV_API const char* ev_cpu_variant(void) {
    return ev::guard_quiet("ev_cpu_variant", static_cast<const char*>(nullptr), []() -> const char* {
        if (ev::cpu_backend_load() != EV_SUCCESS) return nullptr;
        return state().variant.c_str();  // fixed once decided
    });
}

EV_API const char* ev_cpu_variants(void) {
#if defined(EDGEVEDA_CPU_VARIANT_LIST)
    return EDGEVEDA_CPU_VARIANT_LIST;
#else
    return "";
#endif
}

EV_API int ev_cpu_variant_score(const char* name) {
    return ev::guard_quiet("ev_cpu_variant_score", -1, [name]() -> int {
#if defined(EDGEVEDA_CPU_VARIANT_LIST)
        if (name == nullptr || !is_carried(name)) return -1;
        std::string why;
        int score = score_of(module_path(name), &why);
        if (score < 0) ev::set_thread_error(why);
        return score;
#else
        (void)name;
        return -1;
#endif
    });
}

}  // extern "C"

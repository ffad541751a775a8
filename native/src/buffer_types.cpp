// The CPU's extra buffer types (AMX, CPU_REPACK): the defaults of
// ev_config_extras, the switch that ev_init reads (init.cpp: validate_config
// and llama_model_params.use_extra_bufts), and where the weights landed
// (ev_model_buffer_types).
#include "ev_internal.h"
#include "guard.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

namespace ev {

std::string weight_buffer_types(const llama_context* lctx) {
    std::vector<std::pair<std::string, size_t>> rows;
    for (const auto& row : buffer_bytes_by_type(lctx)) {
        if (row.second.model == 0) continue;  // KV cache and compute buffers only
        rows.emplace_back(row.first, row.second.model);
    }
    std::sort(rows.begin(), rows.end());
    std::string out;
    for (const auto& r : rows) {
        char size[48];
        snprintf(size, sizeof size, " %.1f MiB", static_cast<double>(r.second) / (1024.0 * 1024.0));
        if (!out.empty()) out += ", ";
        out += r.first + size;
    }
    return out;
}

}  // namespace ev

extern "C" {

static void ev_config_extras_default_impl(ev_config_extras* extras) {
    if (extras == nullptr) return;
    memset(extras, 0, sizeof *extras);
    extras->struct_size = sizeof(ev_config_extras);
    extras->cpu_extra_buffers = 1;
}

static const char* ev_model_buffer_types_impl(ev_context ctx) {
    ev_error_t code;
    // No lock: the string is written once by ev_init before the handle exists.
    ev::Engine* e = ev_engine_of(ctx, &code, /*need_model=*/false);
    if (e == nullptr) return nullptr;
    return e->buffer_types.c_str();
}

// ---- entry points ----

EV_API void ev_config_extras_default(ev_config_extras* extras) {
    ev::guard_quiet("ev_config_extras_default", [&] { ev_config_extras_default_impl(extras); });
}

EV_API const char* ev_model_buffer_types(ev_context ctx) {
    return ev::guard_quiet("ev_model_buffer_types", static_cast<const char*>(nullptr),
                           [&] { return ev_model_buffer_types_impl(ctx); });
}

}  // extern "C"

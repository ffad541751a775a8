// See llama_memory_rows.h. The only file of edgeveda-ffi that includes a
// header from llama.cpp's src/ (it is compiled as part of the llama target).
#include "llama_memory_rows.h"

#include "llama-ext.h"

size_t ev_llama_memory_rows(const struct llama_context* ctx, struct ev_llama_memory_row* rows, size_t n_max) {
    if (ctx == nullptr) return 0;
    size_t n = 0;
    for (const auto& kv : llama_get_memory_breakdown(ctx)) {
        if (rows != nullptr && n < n_max) {
            rows[n].buft = kv.first;
            rows[n].model = kv.second.model;
            rows[n].context = kv.second.context;
            rows[n].compute = kv.second.compute;
        }
        ++n;
    }
    return n;
}

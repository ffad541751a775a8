// A C function that edgeveda-ffi adds to libllama: llama.cpp's per-buffer
// memory breakdown as plain rows.
//
// Why: ev_memory_stats, ev_model_buffer_types and ev_init's memory-limit check
// need the exact sizes of llama.cpp's buffers (weights, KV cache, compute),
// by buffer type, and before anything is allocated (the no_alloc dry run).
// The public llama.h has no such function; llama.cpp keeps it in its staging
// header src/llama-ext.h, as a C++ std::map, with the note "TODO: convert to
// C-style data structure". This is that conversion, compiled into the llama
// target (native/CMakeLists.txt) so the core includes only public headers and
// the staging header is read by this one translation unit. When llama.cpp
// changes the staging API, llama_memory_rows.cpp is the one file to update.
#pragma once

#include "llama.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bytes llama.cpp holds (or, for a no_alloc context, would hold) in buffers
// of one buffer type.
struct ev_llama_memory_row {
    ggml_backend_buffer_type_t buft;  // ggml_backend_buft_name() names it
    size_t model;                     // weights
    size_t context;                   // KV cache / recurrent state
    size_t compute;                   // the scheduler's compute buffers
};

// Fills rows[0 .. min(n, n_max)) and returns n, the number of buffer types in
// use (so a first call with n_max 0 sizes the array). ctx NULL: returns 0.
// C++ callers: may throw std::bad_alloc, as llama.cpp's own function does.
LLAMA_API size_t ev_llama_memory_rows(const struct llama_context* ctx, struct ev_llama_memory_row* rows,
                                      size_t n_max);

#ifdef __cplusplus
}
#endif

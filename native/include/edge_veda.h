/*
 * edge_veda.h — the Edge Veda text-generation C API, implemented on llama.cpp.
 *
 * THIS FILE IS THE CONTRACT. The Python binding's cffi declarations are
 * generated from the region between EV_CDEF_BEGIN and EV_CDEF_END below, so
 * every type and function a binding can call is declared exactly once, here.
 *
 * Names, enum values and struct field order follow the Edge Veda SDK
 * (core/include/edge_veda.h), so a port can read both side by side. Our
 * additions are in the section "edgeveda-ffi additions" at the end; each says
 * why it exists.
 *
 * ---------------------------------------------------------------------------
 * Conventions
 * ---------------------------------------------------------------------------
 * Ownership
 *   - Strings returned through `char** output` and by ev_stream_next() are
 *     malloc'd by the core; the caller frees them with ev_free_string().
 *   - Strings returned as `const char*` (ev_version, ev_error_string,
 *     ev_backend_name, ev_get_last_error, ev_last_error_message, the fields of
 *     ev_model_info, ev_model_buffer_types) are owned by the library or the
 *     context; never free them.
 *   - ev_embed_result.embeddings is freed with ev_free_embeddings();
 *     ev_tokenize()'s array with ev_free_tokens(); an ev_logprobs list
 *     with ev_free_logprobs().
 *   - Input strings are only read during the call (grammar and stop strings
 *     are copied by ev_generate_stream), so the caller may free them after.
 *
 * Errors
 *   - Functions that can fail return ev_error_t (or report it through an
 *     `ev_error_t* error` out-parameter, which may be NULL).
 *   - Every failure stores a message naming the problem in two places:
 *     the context's last error (ev_get_last_error(ctx)) and the calling
 *     thread's last error (ev_last_error_message()), which also works when
 *     ev_init() fails and so no context exists.
 *   - No function aborts, throws or crashes on a bad argument it can detect:
 *     NULL pointers, out-of-range values, a freed context that has not been
 *     reused by the allocator (detected by a magic number, best effort).
 *
 * Threading (lock order: stream lock, then context lock; never the reverse)
 *   - One context may be used from many threads; calls that touch the model
 *     (generate, stream next, embed, tokenize, reset, model info, chat
 *     template) serialize on the context lock.
 *   - ev_generate_cancel(), ev_stream_cancel(), ev_is_valid(),
 *     ev_get_memory_usage() and ev_model_buffer_types() take no lock that a
 *     running generation holds, so they return at once from any thread.
 *   - One active stream per context. A second ev_generate_stream(), or an
 *     ev_generate(), while a stream is active fails with
 *     EV_ERROR_CONTEXT_INVALID ("a stream is active").
 *   - The compute thread: the calls that do ggml work (ev_init, ev_generate,
 *     ev_generate_stream, ev_stream_next, ev_embed) run it on one thread the
 *     library owns, whichever thread called; the caller waits. ggml's OpenMP
 *     gives every thread that starts a parallel region a team of its own, and
 *     libgomp stops spinning in barriers once its teams outnumber the CPUs:
 *     decode from a second calling thread ran 3-8x slower. With one compute
 *     thread the calling thread does not change the speed. Calls on
 *     different contexts therefore run one at a time. Cancels, stats and the
 *     other calls run on the caller's thread.
 *   - What a call leaves for its caller is the caller's: the thread's last
 *     error (ev_last_error_message) and last stats are set on the calling
 *     thread, not on the compute thread.
 *   - Callbacks run on the calling thread with no lock of ours held, so they
 *     may call back into this API (except ev_free() of the context that is
 *     calling them): the load-progress callback while ev_init waits, the
 *     memory-pressure callback at the end of the call that crossed the
 *     threshold (a safe point). The log callback runs on the thread that
 *     logs (often the compute thread). A call made from inside the
 *     load-progress callback runs on the calling thread (the compute thread
 *     is waiting for the callback).
 *   - No C++ exception leaves an entry point: std::bad_alloc becomes
 *     EV_ERROR_OUT_OF_MEMORY, any other exception the entry's failure code,
 *     with the exception's text as the message.
 *   - ev_free() must not race with other calls on the same context.
 *
 * fork()
 *   - A context or stream belongs to the process that created it. In a child
 *     of fork() the parent's handles are refused: every call on them fails
 *     with EV_ERROR_CONTEXT_INVALID ("... created before fork() ..."),
 *     ev_is_valid() returns false, ev_stream_has_next() false, the cancels do
 *     nothing, and ev_free() / ev_stream_free() only forget the handle,
 *     touching none of its state (its locks may be held by parent threads that
 *     do not exist in the child). Found by a pthread_atfork() counter, not by
 *     getpid(), so the check costs one atomic load.
 *   - Safe in the child: exec or exit; ev_init() of a new context and any use
 *     of it; the functions that take no context. The parent's handles keep
 *     working in the parent.
 *
 * Memory accounting
 *   - Byte counts are llama.cpp's own buffer sizes (model weights, KV cache,
 *     compute buffers), deterministic for a given model and config; they are
 *     not process RSS. See ev_memory_stats.
 */
#ifndef EDGE_VEDA_H
#define EDGE_VEDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(EV_BUILDING_LIBRARY)
#    define EV_API __declspec(dllexport)
#  else
#    define EV_API
#  endif
#else
#  define EV_API __attribute__((visibility("default")))
#endif

/* The API version; the Python extension bakes it in and checks it at import. */
#define EV_VERSION_MAJOR 1
#define EV_VERSION_MINOR 6
#define EV_VERSION_PATCH 0
#define EV_VERSION_STRING "1.6.0"

#ifdef __cplusplus
extern "C" {
#endif

/* EV_CDEF_BEGIN */

/* ------------------------------------------------------------------------- */
/* Error codes and backends                                                   */
/* ------------------------------------------------------------------------- */

typedef enum {
    EV_SUCCESS = 0,
    EV_ERROR_INVALID_PARAM = -1,         /* NULL or out-of-range argument */
    EV_ERROR_OUT_OF_MEMORY = -2,         /* an allocation failed */
    EV_ERROR_MODEL_LOAD_FAILED = -3,     /* missing, unreadable, not GGUF, corrupt */
    EV_ERROR_BACKEND_INIT_FAILED = -4,   /* llama.cpp could not create the context */
    EV_ERROR_INFERENCE_FAILED = -5,      /* decode failed */
    EV_ERROR_CONTEXT_INVALID = -6,       /* NULL/freed/unloaded context, or busy with a stream */
    EV_ERROR_STREAM_ENDED = -7,          /* next on a cancelled or finished stream */
    EV_ERROR_NOT_IMPLEMENTED = -8,       /* feature not built in */
    EV_ERROR_MEMORY_LIMIT_EXCEEDED = -9, /* model + context cannot fit memory_limit_bytes */
    EV_ERROR_UNSUPPORTED_BACKEND = -10,  /* backend not compiled in or no device */
    EV_ERROR_UNKNOWN = -999
} ev_error_t;

typedef enum {
    EV_BACKEND_AUTO = 0,   /* best available: Metal on Apple builds, then Vulkan, then CPU */
    EV_BACKEND_METAL = 1,
    EV_BACKEND_VULKAN = 2,
    EV_BACKEND_CPU = 3
} ev_backend_t;

/* Opaque handles. */
typedef struct ev_context_impl* ev_context;
typedef struct ev_stream_impl* ev_stream;

/* ------------------------------------------------------------------------- */
/* Structures (field order is Edge Veda's)                                    */
/* ------------------------------------------------------------------------- */

typedef struct {
    const char* model_path;      /* GGUF file; required */
    ev_backend_t backend;        /* EV_BACKEND_AUTO by default */
    int num_threads;             /* 0 = auto (hardware threads, at most 8); < 0 invalid */
    int context_size;            /* tokens; 0 = the model's training context; < 0 invalid */
    int batch_size;              /* prompt tokens per decode; must be > 0 (default 512) */
    size_t memory_limit_bytes;   /* 0 = no limit; checked before allocating */
    bool auto_unload_on_memory_pressure; /* unload the model when use exceeds the limit */
    int gpu_layers;              /* -1 all, 0 none; ignored by the CPU backend */
    bool use_mmap;
    bool use_mlock;
    int seed;                    /* -1 = random per request; >= 0 reproducible */
    int flash_attn;              /* -1 auto, 0 off, 1 on */
    int kv_cache_type_k;         /* ggml_type: 0 F32, 1 F16 (default), 8 Q8_0 */
    int kv_cache_type_v;
    void* reserved;              /* NULL, or an ev_config_extras* (struct_size set) */
} ev_config;

typedef struct {
    int max_tokens;              /* >= 0; 0 = process the prompt only (default 512) */
    float temperature;           /* >= 0; 0 = greedy (default 0.8) */
    float top_p;                 /* [0, 1]; 1 = off (default 0.95) */
    int top_k;                   /* >= 0; 0 = off (default 40) */
    float repeat_penalty;        /* > 0; 1 = off (default 1.1) */
    float frequency_penalty;     /* finite; 0 = off */
    float presence_penalty;      /* finite; 0 = off */
    const char** stop_sequences; /* matched across tokens, never emitted; NULL entries invalid */
    int num_stop_sequences;      /* >= 0 */
    const char* grammar_str;     /* GBNF; NULL or "" = none; invalid grammar -> INVALID_PARAM */
    const char* grammar_root;    /* NULL = "root" */
    float confidence_threshold;  /* 0 = off; > 0 computes per-token confidence */
    void* reserved;              /* NULL, or an ev_generation_extras* (struct_size set) */
} ev_generation_params;

typedef struct {
    size_t current_bytes;  /* model + context bytes now (llama.cpp buffer sizes) */
    size_t peak_bytes;     /* highest current_bytes seen by this context */
    size_t limit_bytes;    /* the limit in force; 0 = none */
    size_t model_bytes;    /* model weight buffers */
    size_t context_bytes;  /* KV cache + compute + output buffers (incl. embedding context) */
    size_t reserved[8];    /* zero */
} ev_memory_stats;

typedef struct {
    const char* name;          /* general.name, else llama.cpp's description; owned by ctx */
    const char* architecture;  /* general.architecture; owned by ctx */
    uint64_t num_parameters;
    int context_length;        /* the context size in use (n_ctx), as in Edge Veda */
    int embedding_dim;
    int num_layers;
    void* reserved;            /* NULL */
} ev_model_info;

typedef struct {
    float* embeddings;   /* dimensions floats, L2-normalized; free with ev_free_embeddings */
    int dimensions;
    int token_count;
} ev_embed_result;

typedef struct {
    float confidence;          /* last token's confidence 0..1; -1 when not computed */
    float avg_confidence;      /* running mean; -1 when none */
    bool needs_cloud_handoff;  /* avg fell below confidence_threshold after >= 3 tokens */
    int token_index;           /* number of tokens generated so far by the stream */
} ev_stream_token_info;

/* Called with (user_data, current_bytes, limit_bytes) when use reaches 90 % of the limit. */
typedef void (*ev_memory_pressure_callback)(void* user_data, size_t current_bytes, size_t limit_bytes);

/* ------------------------------------------------------------------------- */
/* Version, errors, backends                                                  */
/* ------------------------------------------------------------------------- */

/* The API version string (EV_VERSION_STRING). Static; any thread. */
EV_API const char* ev_version(void);

/* A static English text for an error code ("Unknown error" for unknown codes). */
EV_API const char* ev_error_string(ev_error_t error);

/* The backend EV_BACKEND_AUTO resolves to in this build on this machine. */
EV_API ev_backend_t ev_detect_backend(void);

/* True when the backend is compiled in and has a usable device (AUTO and CPU: always). */
EV_API bool ev_is_backend_available(ev_backend_t backend);

/* "Auto", "Metal", "Vulkan", "CPU" or "Unknown". Static. */
EV_API const char* ev_backend_name(ev_backend_t backend);

/* ------------------------------------------------------------------------- */
/* Initialization                                                             */
/* ------------------------------------------------------------------------- */

/* Fill *config with the defaults (NULL: no-op): path NULL, AUTO, threads 0,
 * context 2048, batch 512, no limit, auto_unload true, gpu_layers -1, mmap on,
 * mlock off, seed -1, flash_attn -1, KV cache F16/F16. */
EV_API void ev_config_default(ev_config* config);

/* Load a model and create a context. Returns NULL on failure and stores the
 * code in *error (if not NULL) and a message in ev_last_error_message():
 *   INVALID_PARAM          NULL config/path, empty path, negative sizes/threads,
 *                          unknown backend, batch_size <= 0, context above the
 *                          model's training context, reserved neither NULL nor
 *                          a valid ev_config_extras (the message names the field)
 *   MODEL_LOAD_FAILED      missing file, a directory, not GGUF, corrupt or truncated
 *                          (the message gives the path and what llama.cpp said)
 *   UNSUPPORTED_BACKEND    backend not compiled in / no device for it
 *   MEMORY_LIMIT_EXCEEDED  memory_limit_bytes below what model + context need
 *                          (checked before the weights are allocated)
 *   BACKEND_INIT_FAILED    llama.cpp could not create the context
 *   OUT_OF_MEMORY          an allocation failed
 * The returned context is freed with ev_free(). */
EV_API ev_context ev_init(const ev_config* config, ev_error_t* error);

/* Free the context, its model and buffers. NULL is a no-op. Streams should be
 * freed first; a stream left over is detached and may still be passed to
 * ev_stream_free() (and only that) afterwards. */
EV_API void ev_free(ev_context ctx);

/* True when ctx is a live context with a loaded model (false after an auto-unload). */
EV_API bool ev_is_valid(ev_context ctx);

/* ------------------------------------------------------------------------- */
/* Generation                                                                 */
/* ------------------------------------------------------------------------- */

/* Fill *params with the defaults (NULL: no-op): max_tokens 512, temperature
 * 0.8, top_p 0.95, top_k 40, repeat_penalty 1.1, no penalties, no stops, no
 * grammar, threshold 0. */
EV_API void ev_generation_params_default(ev_generation_params* params);

/* Generate a completion for prompt (tokenized with special-token parsing;
 * BOS added only when the model asks for it). params NULL = defaults.
 * On EV_SUCCESS *output is a malloc'd string (free with ev_free_string); it
 * holds the text up to (not including) a stop sequence, EOG, max_tokens, a
 * full context, or a cancel (ev_generate_cancel: partial text, still
 * EV_SUCCESS; ev_get_last_generation_stats() tells which). Errors:
 * INVALID_PARAM (NULL/out-of-range parameter, invalid grammar, prompt longer
 * than the context), CONTEXT_INVALID (NULL/freed/unloaded ctx, a stream is
 * active), INFERENCE_FAILED, OUT_OF_MEMORY. On error *output is NULL. */
EV_API ev_error_t ev_generate(ev_context ctx, const char* prompt,
                              const ev_generation_params* params, char** output);

/* Free a string returned by this API. NULL is a no-op. */
EV_API void ev_free_string(char* str);

/* ------------------------------------------------------------------------- */
/* Streaming (pull-based: each ev_stream_next computes one piece and returns)  */
/* ------------------------------------------------------------------------- */

/* Start a stream. Returns NULL and sets *error on the same errors as
 * ev_generate (CONTEXT_INVALID when another stream is active). The prompt is
 * processed by the first ev_stream_next(). Free with ev_stream_free(). */
EV_API ev_stream ev_generate_stream(ev_context ctx, const char* prompt,
                                    const ev_generation_params* params, ev_error_t* error);

/* The next piece of text: a malloc'd, non-empty string of whole UTF-8
 * characters (free with ev_free_string) and EV_SUCCESS. Returns NULL with:
 *   EV_SUCCESS          the stream finished (EOG, stop sequence, max_tokens, full context)
 *   EV_ERROR_STREAM_ENDED     called again after the end, or after a cancel
 *   EV_ERROR_INFERENCE_FAILED decode failed (stream is ended)
 *   EV_ERROR_INVALID_PARAM    NULL stream
 *   EV_ERROR_CONTEXT_INVALID  its context was freed or unloaded */
EV_API char* ev_stream_next(ev_stream stream, ev_error_t* error);

/* True while more text may come (not ended, not cancelled). NULL: false. */
EV_API bool ev_stream_has_next(ev_stream stream);

/* Ask the stream to stop; any thread, lock-free. Interrupts prompt processing
 * and the token in progress. NULL: no-op. */
EV_API void ev_stream_cancel(ev_stream stream);

/* Free the stream and make its context available for another. Safe after
 * ev_free(ctx). NULL: no-op. Not concurrently with ev_stream_next. */
EV_API void ev_stream_free(ev_stream stream);

/* Confidence information for the stream's last token (see ev_stream_token_info). */
EV_API ev_error_t ev_stream_get_token_info(ev_stream stream, ev_stream_token_info* info);

/* ------------------------------------------------------------------------- */
/* Memory                                                                     */
/* ------------------------------------------------------------------------- */

/* Fill *stats (see ev_memory_stats). Lock-free of running generations. */
EV_API ev_error_t ev_get_memory_usage(ev_context ctx, ev_memory_stats* stats);

/* Set the limit (0 = none). When current use is at or above 90 % of the new
 * limit the pressure callback runs; when use is above the limit and
 * auto_unload_on_memory_pressure is set, the model is unloaded (ev_is_valid
 * false, calls give CONTEXT_INVALID). If a generation is running in another
 * thread, that thread does this when its call ends (a safe point). */
EV_API ev_error_t ev_set_memory_limit(ev_context ctx, size_t limit_bytes);

/* Register (NULL: unregister) the pressure callback. It is called in the
 * thread that does the work (ev_init, ev_set_memory_limit, or the end of a
 * generate/stream/embed call), with no lock held; it may call this API. */
EV_API ev_error_t ev_set_memory_pressure_callback(ev_context ctx,
                                                  ev_memory_pressure_callback callback,
                                                  void* user_data);

/* Drop the KV cache (prompt cache included) and the embedding context. */
EV_API ev_error_t ev_memory_cleanup(ev_context ctx);

/* ------------------------------------------------------------------------- */
/* Model info, logging, errors, reset                                          */
/* ------------------------------------------------------------------------- */

/* Fill *info; its strings are owned by ctx and live until ev_free. */
EV_API ev_error_t ev_get_model_info(ev_context ctx, ev_model_info* info);

/* true: all llama.cpp logs to stderr; false (default): none (a failure explains itself through
 * the error message, which quotes what llama.cpp said). Process-wide. */
EV_API void ev_set_verbose(bool verbose);

/* The context's last error message ("" if none), failures of its streams
 * included (ev_stream_next, ev_stream_get_stats, ev_stream_get_token_info).
 * NULL ctx: this thread's last error (as ev_last_error_message). Valid until
 * the next failing call on ctx. */
EV_API const char* ev_get_last_error(ev_context ctx);

/* Forget the conversation: clears the KV cache and the prompt cache. */
EV_API ev_error_t ev_reset(ev_context ctx);

/* ------------------------------------------------------------------------- */
/* Embeddings                                                                 */
/* ------------------------------------------------------------------------- */

/* Mean-pooled, L2-normalized embedding of text (a separate context of up to
 * 512 tokens, created on first use). Errors: INVALID_PARAM (NULL, empty text,
 * too long), CONTEXT_INVALID, INFERENCE_FAILED. */
EV_API ev_error_t ev_embed(ev_context ctx, const char* text, ev_embed_result* result);

/* Free result->embeddings and zero the struct. NULL: no-op. */
EV_API void ev_free_embeddings(ev_embed_result* result);

/* ========================================================================= */
/* edgeveda-ffi additions (not in Edge Veda)                                  */
/* ========================================================================= */

/* Why: ev_init() deletes the context on failure, so Edge Veda loses the
 * reason. This returns the message of the last failing call on the calling
 * thread, any function, ev_init included ("" if none). Thread-local; valid
 * until the next failing call on this thread. */
EV_API const char* ev_last_error_message(void);

/* Why: a blocking ev_generate() could not be stopped. Cancels the generation
 * running on ctx (blocking or stream), from any thread, lock-free: prompt
 * processing is interrupted through llama.cpp's abort callback, generation
 * stops before the next token. No generation running: no effect. */
EV_API ev_error_t ev_generate_cancel(ev_context ctx);

/* Why: Edge Veda's prompts ignore the model's chat template. */
typedef struct {
    const char* role;     /* "system", "user", "assistant" */
    const char* content;
} ev_chat_message;

/* Format messages with the model's own chat template (tokenizer.chat_template,
 * through llama_chat_apply_template; ChatML when the model has none).
 * add_assistant appends the assistant prefix. *output: malloc'd, free with
 * ev_free_string. Errors: INVALID_PARAM (NULL, a NULL role/content),
 * NOT_IMPLEMENTED (the template is not one llama.cpp supports). */
EV_API ev_error_t ev_chat_apply_template(ev_context ctx, const ev_chat_message* messages,
                                         size_t num_messages, bool add_assistant,
                                         char** output);

/* Why: token counting, prompt budgeting and benchmarks need the tokenizer.
 * add_special: add BOS/EOS as the model asks; parse_special: read special
 * tokens such as <|im_start|>. *tokens malloc'd, free with ev_free_tokens. */
EV_API ev_error_t ev_tokenize(ev_context ctx, const char* text, bool add_special,
                              bool parse_special, int32_t** tokens, int* num_tokens);
EV_API void ev_free_tokens(int32_t* tokens);

/* Tokens back to text (special: render special tokens). Invalid ids -> INVALID_PARAM. */
EV_API ev_error_t ev_detokenize(ev_context ctx, const int32_t* tokens, int num_tokens,
                                bool special, char** output);

/* Why: loading a large model takes seconds; a UI wants progress and a way out.
 * Called in the thread that called ev_init with progress 0..1; return false to abort the
 * load (ev_init then fails with MODEL_LOAD_FAILED, "load cancelled"). */
typedef bool (*ev_load_progress_callback)(float progress, void* user_data);

/* ev_init with a load-progress callback (NULL: none). */
EV_API ev_context ev_init_with_progress(const ev_config* config,
                                        ev_load_progress_callback progress,
                                        void* user_data, ev_error_t* error);

/* Why: the prompt cache. Every generation keeps its tokens in the KV cache;
 * the next prompt that starts with the same tokens (the next turn of a chat)
 * processes only its new tokens. ev_reset() drops the cache. Enabled by
 * default; disabling makes every call start from an empty cache. */
EV_API ev_error_t ev_set_prompt_cache(ev_context ctx, bool enabled);

/* Why: a result needs its token counts, timings and why it ended. */
typedef enum {
    EV_FINISH_NONE = 0,       /* not finished (a stream in progress) */
    EV_FINISH_STOP = 1,       /* end-of-generation token or a stop sequence */
    EV_FINISH_LENGTH = 2,     /* max_tokens reached or the context is full */
    EV_FINISH_CANCELLED = 3,  /* ev_generate_cancel / ev_stream_cancel */
    EV_FINISH_ERROR = 4       /* decode failed */
} ev_finish_reason;

typedef struct {
    int prompt_tokens;        /* tokens in the prompt */
    int cached_tokens;        /* of which reused from the prompt cache (not processed) */
    int generated_tokens;     /* tokens sampled */
    double prompt_ms;         /* prompt processing time */
    double generation_ms;     /* time from the first sampled token to the end */
    double first_token_ms;    /* from the call's start to the first token's text */
    ev_finish_reason finish_reason;
    int reserved[4];
} ev_generation_stats;

/* Stats of the last generation (ev_generate or a finished stream) on ctx by
 * the calling thread; if this thread has none on ctx, the context's last.
 * ev_stream_get_stats: the stream's, so far. */
EV_API ev_error_t ev_get_last_generation_stats(ev_context ctx, ev_generation_stats* stats);
EV_API ev_error_t ev_stream_get_stats(ev_stream stream, ev_generation_stats* stats);

/* One entry of ev_generation_extras.logit_bias (the layout of llama.cpp's
 * llama_logit_bias). */
typedef struct {
    int32_t token;  /* a token id of the model's vocabulary */
    float bias;     /* added to its logit; finite, or -INFINITY: never pick it */
} ev_logit_bias;

/* Why: per-request seed and min_p without breaking Edge Veda's struct layout.
 * Point ev_generation_params.reserved at one of these, struct_size set to
 * sizeof(ev_generation_extras). */
typedef struct {
    size_t struct_size;
    int64_t seed;        /* -2 = use the context's config seed; -1 random; >= 0 fixed */
    float min_p;         /* [0, 1]; 0 = off */
    int reserved[7];
    /* Since 1.4.0 (an older struct_size, ending before this field, still
     * works and means -1): -1 = off; 0..20 = record every generated token's
     * logprob and that many alternatives (see ev_token_logprob). */
    int32_t top_logprobs;
    /* Since 1.6.0 (an older struct_size, ending before this field, still
     * works and means none). Why: OpenAI's and llama-cpp-python's logit_bias,
     * to ban tokens or favour them. Each entry's bias is added to its token's
     * logit before the penalties and the sampling (after the grammar mask),
     * and logprobs report the biased distribution. A token may appear more
     * than once (the biases add up). The array is read during the call that
     * takes the params (ev_generate, ev_generate_stream) and may be freed
     * after it. INVALID_PARAM: num_logit_bias < 0, logit_bias NULL with
     * num_logit_bias > 0, a token outside [0, vocabulary size), a bias that
     * is NaN or +INFINITY (the message names the entry). */
    const ev_logit_bias* logit_bias;
    int32_t num_logit_bias;
} ev_generation_extras;

/* Fill *extras with defaults (struct_size set, seed -2, min_p 0, top_logprobs
 * -1, no logit_bias). */
EV_API void ev_generation_extras_default(ev_generation_extras* extras);

/* Why: scoring, confidence and debugging of a prompt need the probability of
 * every generated token and of its closest rivals (OpenAI's logprobs /
 * top_logprobs), and every binding should get them the same way.
 *
 * What the numbers are: for each generated token, the natural-log softmax
 * of the logits the sampler chain sees after the grammar mask and the
 * repetition / frequency / presence penalties, at temperature 1 and before
 * top-k / top-p / min-p truncation: the distribution greedy decoding picks
 * from. So with temperature 0 the chosen token is top[0] (ties: the lowest
 * id, as the greedy pick) and logprob == top[0].logprob; with temperature > 0
 * the chosen token may be any token the truncated, tempered draw allowed.
 * Tokens the grammar forbids have logprob -inf and are never listed among
 * the alternatives. The end-of-generation token is not reported (as it is
 * not in the text); a token that completed a stop sequence is.
 *
 * Turned on by ev_generation_extras.top_logprobs >= 0; when off (-1, the
 * default) nothing is computed or kept. When on, each token costs one more
 * pass over the vocabulary (log-sum-exp) and a partial sort for the
 * alternatives. */
typedef struct {
    int32_t token;        /* token id */
    const char* text;     /* its bytes (as in the output; special tokens render as ""), NUL-terminated */
    size_t text_len;      /* may be a partial UTF-8 sequence, may contain NUL */
    float logprob;        /* <= 0 */
} ev_top_logprob;

typedef struct {
    int32_t token;              /* the generated token */
    const char* text;           /* its bytes, NUL-terminated (see ev_top_logprob.text) */
    size_t text_len;
    float logprob;              /* its logprob in the distribution above, <= 0 */
    const ev_top_logprob* top;  /* num_top alternatives, highest logprob first */
    int32_t num_top;            /* min(top_logprobs, tokens with a finite logprob) */
} ev_token_logprob;

/* A list of entries, one per generated token, in order (empty: tokens NULL,
 * num_tokens 0). Everything it points at belongs to the list, not to a
 * context or stream: free it with ev_free_logprobs (once, any thread). */
typedef struct {
    const ev_token_logprob* tokens;
    size_t num_tokens;
    void* internal;             /* owned by the library; do not touch */
} ev_logprobs;

/* The entries of the tokens sampled during the stream's last ev_stream_next
 * call, in order. A token's bytes may reach the text in a later piece (an
 * incomplete UTF-8 character, or text held back as a possible stop
 * sequence), so a piece may come with several entries or none; concatenated
 * over the calls, the entries are ev_generate's for the same request. The
 * entries of the call that ended the stream (NULL, EV_SUCCESS) are reported
 * after it too. Empty after a call that failed or found the stream ended, and
 * when logprobs are off. *out is a copy: free it with ev_free_logprobs; it
 * stays valid after the stream is freed. Takes the stream lock (call it
 * between ev_stream_next calls). Errors: INVALID_PARAM (NULL/freed stream,
 * NULL out), CONTEXT_INVALID (a stream inherited through fork()). */
EV_API ev_error_t ev_stream_get_logprobs(ev_stream stream, ev_logprobs* out);

/* The entries of the calling thread's last ev_generate on ctx (as
 * ev_get_last_generation_stats: the caller's thread, even though the work ran
 * on the compute thread). Empty when that generation had logprobs off or
 * failed, or this thread has not generated on ctx (a stream's entries come
 * from ev_stream_get_logprobs only). Thread-local: takes no lock, so it never
 * waits for another thread's generation. *out: free with ev_free_logprobs.
 * Errors: INVALID_PARAM (NULL out), CONTEXT_INVALID. */
EV_API ev_error_t ev_get_last_logprobs(ev_context ctx, ev_logprobs* out);

/* Free what out holds and zero it. NULL, or a zeroed list: no-op. */
EV_API void ev_free_logprobs(ev_logprobs* logprobs);

/* Why: a run-time switch for the CPU backend's extra buffer types, without
 * breaking Edge Veda's ev_config layout. llama.cpp puts weights in "extra
 * buffer types" where the CPU and the quant type allow: AMX (Intel Sapphire
 * Rapids and later) and CPU_REPACK (weights repacked into interleaved layouts,
 * e.g. Q4_0, Q4_K, IQ4_NL on AVX2/AVX-512/ARM). They are faster, and they are
 * the escape hatch when one of those CPU kernels misbehaves (AMX built with
 * GCC < 14): off keeps every weight in plain CPU buffers
 * (llama_model_params.use_extra_bufts). Point ev_config.reserved at one of
 * these, struct_size set to sizeof(ev_config_extras); ev_config.reserved NULL
 * means the defaults. A struct_size other than sizeof(ev_config_extras), a
 * cpu_extra_buffers other than 0 or 1, or a non-zero reserved entry fails
 * ev_init with INVALID_PARAM naming the field. */
typedef struct {
    size_t struct_size;     /* sizeof(ev_config_extras) */
    int cpu_extra_buffers;  /* 1 on (default): AMX / CPU_REPACK where possible; 0 off */
    int reserved[7];        /* zero */
} ev_config_extras;

/* Fill *extras with the defaults (NULL: no-op): struct_size set,
 * cpu_extra_buffers 1, reserved zero. */
EV_API void ev_config_extras_default(ev_config_extras* extras);

/* Why: with the switch above a host must see where the weights went. The
 * model's weight buffers as llama.cpp allocated them at load, by buffer type
 * (ggml_backend_buft_name) with their sizes, sorted by name:
 * "CPU_Mapped 85.8 MiB, CPU_REPACK 57.0 MiB" (MiB with one decimal;
 * CPU_Mapped is the mmap'ed file; no REPACK/AMX entry when
 * cpu_extra_buffers is 0). Fixed at ev_init (an auto-unload does not change
 * it); owned by ctx, valid until ev_free; no lock, any thread. NULL for a NULL, freed or fork()-inherited
 * context (the reason in ev_last_error_message()). */
EV_API const char* ev_model_buffer_types(ev_context ctx);

/* Why: hosts route llama.cpp's logs into their own logging (Python `logging`).
 * level: 1 debug, 2 info, 3 warn, 4 error. Called in the logging thread;
 * NULL restores the default (stderr, as set by ev_set_verbose). The callback
 * must not call back into this API. Process-wide. */
typedef void (*ev_log_callback)(int level, const char* text, void* user_data);
EV_API void ev_set_log_callback(ev_log_callback callback, void* user_data);

/* Why: `edgeveda info` reports what this build can do. Static strings. */
EV_API const char* ev_llama_version(void);    /* llama.cpp commit/build */
EV_API const char* ev_system_info(void);      /* CPU features, as llama.cpp reports them */

/* Why: one portable build for every x86-64 CPU. A build with CPU variants
 * (EDGEVEDA_CPU_VARIANTS=1, the wheel) carries ggml's CPU backend once per
 * CPU level (x64, sse42, ..., haswell, skylakex, icelake, zen4,
 * sapphirerapids, ...) as modules libggml-cpu-<name>.so in the folder
 * cpu_variants/ beside the library that holds this core (or in
 * $EDGEVEDA_CPU_VARIANT_DIR), and loads one at first use: the one named by
 * $EDGEVEDA_CPU_VARIANT, else the best this CPU can execute (ggml's score).
 * A source build has the CPU backend compiled in: its variant is "native"
 * (-march=native) or "generic" (EDGEVEDA_NATIVE_CPU=0).
 *
 * ev_cpu_backend_load() loads it now; ev_init(), ev_detect_backend(),
 * ev_is_backend_available() and ev_system_info() do it themselves. Errors:
 *   INVALID_PARAM        $EDGEVEDA_CPU_VARIANT names no variant this build carries
 *   UNSUPPORTED_BACKEND  this CPU cannot execute that variant (never an illegal
 *                        instruction: the module's own CPU check says so first)
 *   BACKEND_INIT_FAILED  a carried module is missing or does not load (the
 *                        message names the file)
 * The message is in ev_last_error_message(). The outcome is decided once per
 * process (the environment is read at the first call): later calls return
 * the same code and message. Any thread. */
EV_API ev_error_t ev_cpu_backend_load(void);

/* The CPU variant in use ("zen4", "native", ...): loads it first. NULL when
 * the load failed (see ev_cpu_backend_load). Static string. */
EV_API const char* ev_cpu_variant(void);

/* The variants this build carries, comma-separated, in ggml's order ("" in
 * a source build). Static string; does not load anything. */
EV_API const char* ev_cpu_variants(void);

/* Whether this CPU can execute variant name: its ggml score (> 0 yes, the
 * higher the better), 0 when it cannot, -1 when this build does not carry
 * name or its module does not load. Opens the module to ask it and closes
 * it again (the variant in use is not changed). Any thread. */
EV_API int ev_cpu_variant_score(const char* name);

/* EV_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* EDGE_VEDA_H */

// One generation, the state machine behind both ev_generate (a loop in the
// caller's thread, generate_api.cpp) and streams (one piece per
// ev_stream_next, stream_api.cpp), and what it is built from: the validated
// parameters (params.cpp) and the sampler (sampler.cpp).
#pragma once

#include "ev_internal.h"
#include "text_output.h"

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

namespace ev {

// ---- parameters (params.cpp) ----
// The parameters a generation needs, deep-copied so the caller may free theirs.
struct Params {
    int max_tokens;
    float temperature, top_p, min_p;
    int top_k;
    float repeat_penalty, frequency_penalty, presence_penalty;
    std::vector<std::string> stops;
    std::string grammar, grammar_root;
    float confidence_threshold;
    int64_t seed;  // -2: config seed
    int top_logprobs = -1;  // -1 off; 0..20 alternatives per token
    std::vector<llama_logit_bias> logit_bias;  // token ids checked by build_sampler
};

// Validates *in (NULL: the defaults) into *out; a bad field fails with
// INVALID_PARAM, the message naming it, as this thread's error.
ev_error_t read_params(const ev_generation_params* in, Params* out);

// ---- the sampler (sampler.cpp) ----
struct Penalties;  // our penalties sampler's state

// The distribution logprobs report (edge_veda.h, ev_token_logprob): the
// candidates' logits after grammar and penalties, by token id, recorded by a
// sampler in the chain right after the penalties, or by
// logprobs_from_logits on the greedy fast path (the same arithmetic, so the
// same numbers).
struct LogprobDist {
    int32_t n_vocab = 0;
    int k = 0;                       // alternatives wanted (0..20)
    std::vector<float> vals;         // by id; -inf: not a candidate (grammar)
    double log_z = 0;                // log of the sum of exp(vals)
    std::vector<llama_token> top;    // the k best ids, best first (ties: lower id)
    std::vector<llama_token> order;  // scratch for the selection
    float logprob(llama_token t) const { return static_cast<float>(double(vals[t]) - log_z); }
};

struct Sampler {
    llama_sampler* chain = nullptr;  // owned by the caller (llama_sampler_free)
    // greedy without grammar: pick from the logits directly (greedy_from_logits);
    // pen is the chain's penalties state then, or nullptr
    bool direct_greedy = false;
    const Penalties* pen = nullptr;
    // logprobs on: the chain's recorder (owned by the chain); nullptr when off
    LogprobDist* lp = nullptr;
};

// The chain for p: grammar, penalties, then greedy, or top-k, top-p, min-p,
// temperature and a draw seeded with p.seed (-2: config_seed; < 0: random).
// On failure returns the code with the message in *why (and no chain).
ev_error_t build_sampler(const llama_vocab* vocab, const Params& p, int64_t config_seed, Sampler* out,
                         std::string* why);

// The token llama_sampler_sample would return for a chain of [penalties,]
// greedy, straight from the logits.
llama_token greedy_from_logits(const float* logits, int32_t n_vocab, const Penalties* pen);

// Fill *lp from the raw logits and the penalties (pen may be nullptr), as the
// chain's recorder would have from its candidates (greedy fast path).
void logprobs_from_logits(LogprobDist* lp, const float* logits, const Penalties* pen);

// ---- the state machine (generation.cpp) ----
// The context size in tokens that generation may use (config.context_size).
int context_limit(const Engine* e);
// A malloc'd copy for the caller (ev_free_string); nullptr when out of memory.
char* dup_cstr(const std::string& s);
// The finished generation's stats: the context's last, and the calling thread's.
void record_stats(Engine* e, const ev_generation_stats& s);
// *out for a list (null: empty), holding it until ev_free_logprobs. May throw
// std::bad_alloc (the guard reports it).
void export_logprobs(std::shared_ptr<const LogprobList> list, ev_logprobs* out);
void free_logprobs(ev_logprobs* out);

// All methods except cancelled() run with the context lock held.
struct Generation {
    using Clock = std::chrono::steady_clock;

    Engine* e = nullptr;
    Params p;
    llama_sampler* smpl = nullptr;
    bool direct_greedy = false;  // see Sampler
    const Penalties* pen = nullptr;
    LogprobDist* lp = nullptr;  // logprobs on (see Sampler)
    // the entries of the tokens generated (ev_generate) or of those sampled
    // by the current ev_stream_next (the stream clears it before each call)
    LogprobList logprobs;
    std::vector<llama_token> prompt;
    TextOutput out{{}};

    bool started = false;   // prompt processed
    bool done = false;
    bool has_pending = false;  // sampled token not yet decoded
    llama_token pending = 0;
    int n_generated = 0;
    std::vector<llama_token> generated;

    Clock::time_point t_start;
    Clock::time_point t_first_sample;
    bool first_text_seen = false;
    ev_generation_stats stats{};

    // confidence
    float last_conf = -1.f;
    double conf_sum = 0;
    int conf_n = 0;
    bool handoff = false;

    Generation() = default;
    Generation(const Generation&) = delete;
    Generation& operator=(const Generation&) = delete;
    ~Generation();

    bool cancelled(const std::atomic<bool>* stream_cancel) const;
    // Tokenize the prompt and build the sampler.
    ev_error_t prepare(const char* text);
    // The next safe text ("" with done set at the end); the prompt is
    // processed by the first call.
    ev_error_t next(std::string* text, const std::atomic<bool>* stream_cancel);
    void finish(ev_finish_reason why);
    ev_generation_stats current_stats() const;

   private:
    ev_error_t set(ev_error_t code, const std::string& msg);
    void resync_cache(const llama_token* batch, size_t n_batch);
    ev_error_t process_prompt(const std::atomic<bool>* stream_cancel);
    void note_confidence();
    void note_first_text();
    std::string token_text(llama_token t) const;
    void note_logprobs(llama_token tok, const std::string& text);
};

}  // namespace ev

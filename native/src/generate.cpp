// Text generation: the one Generation engine behind both ev_generate (a loop
// in the caller's thread) and streams (one piece per ev_stream_next).
#include "ev_internal.h"
#include "guard.h"
#include "text_output.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace ev {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

char* dup_cstr(const std::string& s) {
    char* p = static_cast<char*>(malloc(s.size() + 1));
    if (p) memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

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
};

bool finite(float v) { return std::isfinite(v); }

// The context size in tokens that generation may use: the configured
// context_size. llama.cpp rounds n_ctx up to a multiple of 256, so
// llama_n_ctx() alone would let a context_size of 64 hold 256 tokens.
int context_limit(const Engine* e) {
    int n = static_cast<int>(llama_n_ctx(e->lctx));
    if (e->config.context_size > 0 && e->config.context_size < n) n = e->config.context_size;
    return n;
}

ev_error_t read_params(const ev_generation_params* in, Params* out) {
    ev_generation_params d;
    ev_generation_params_default(&d);
    const ev_generation_params& p = in ? *in : d;
    if (p.max_tokens < 0) return fail(EV_ERROR_INVALID_PARAM, "max_tokens must be >= 0");
    if (!finite(p.temperature) || p.temperature < 0) return fail(EV_ERROR_INVALID_PARAM, "temperature must be >= 0 (0 = greedy)");
    if (!finite(p.top_p) || p.top_p < 0 || p.top_p > 1) return fail(EV_ERROR_INVALID_PARAM, "top_p must be in [0, 1]");
    if (p.top_k < 0) return fail(EV_ERROR_INVALID_PARAM, "top_k must be >= 0 (0 = off)");
    if (!finite(p.repeat_penalty) || p.repeat_penalty <= 0) return fail(EV_ERROR_INVALID_PARAM, "repeat_penalty must be > 0 (1 = off)");
    if (!finite(p.frequency_penalty)) return fail(EV_ERROR_INVALID_PARAM, "frequency_penalty must be finite");
    if (!finite(p.presence_penalty)) return fail(EV_ERROR_INVALID_PARAM, "presence_penalty must be finite");
    if (!finite(p.confidence_threshold) || p.confidence_threshold < 0 || p.confidence_threshold > 1) {
        return fail(EV_ERROR_INVALID_PARAM, "confidence_threshold must be in [0, 1]");
    }
    if (p.num_stop_sequences < 0) return fail(EV_ERROR_INVALID_PARAM, "num_stop_sequences must be >= 0");
    if (p.num_stop_sequences > 0 && p.stop_sequences == nullptr) {
        return fail(EV_ERROR_INVALID_PARAM, "stop_sequences is NULL but num_stop_sequences > 0");
    }
    out->stops.clear();
    for (int i = 0; i < p.num_stop_sequences; ++i) {
        if (p.stop_sequences[i] == nullptr) {
            return fail(EV_ERROR_INVALID_PARAM, "stop_sequences[" + std::to_string(i) + "] is NULL");
        }
        out->stops.emplace_back(p.stop_sequences[i]);
    }
    out->max_tokens = p.max_tokens;
    out->temperature = p.temperature;
    out->top_p = p.top_p;
    out->top_k = p.top_k;
    out->repeat_penalty = p.repeat_penalty;
    out->frequency_penalty = p.frequency_penalty;
    out->presence_penalty = p.presence_penalty;
    out->grammar = p.grammar_str ? p.grammar_str : "";
    out->grammar_root = p.grammar_root && p.grammar_root[0] ? p.grammar_root : "root";
    out->confidence_threshold = p.confidence_threshold;
    out->seed = -2;
    out->min_p = 0;
    if (p.reserved != nullptr) {
        const auto* x = static_cast<const ev_generation_extras*>(p.reserved);
        if (x->struct_size != sizeof(ev_generation_extras)) {
            return fail(EV_ERROR_INVALID_PARAM,
                        "params.reserved must be NULL or an ev_generation_extras with struct_size set");
        }
        if (x->seed < -2 || x->seed > 0xFFFFFFFELL) return fail(EV_ERROR_INVALID_PARAM, "extras.seed must be -2, -1 or in [0, 2^32-2]");
        if (!finite(x->min_p) || x->min_p < 0 || x->min_p > 1) return fail(EV_ERROR_INVALID_PARAM, "extras.min_p must be in [0, 1]");
        out->seed = x->seed;
        out->min_p = x->min_p;
    }
    return EV_SUCCESS;
}

// The repeat/frequency/presence penalties of llama.cpp's penalties sampler,
// with the same window and the same arithmetic (bit-identical logits), but
// applied only to the <= 64 distinct tokens of the window. llama.cpp's looks
// every candidate up in a hash map: ~49k lookups per token for SmolLM2's
// vocabulary, about as long as the rest of sampling (benchmarks/README.md).
struct Penalties {
    int32_t n_vocab, last_n;
    float repeat, freq, present;
    std::vector<llama_token> ring;      // the window; once full, head is the oldest
    size_t head = 0;
    std::vector<int32_t> count;         // occurrences in the window, per token id
    std::vector<llama_token> distinct;  // the ids whose count is > 0
};

void penalize(const Penalties* p, llama_token_data& d, int32_t c) {
    if (d.logit <= 0) {
        d.logit *= p->repeat;
    } else {
        d.logit /= p->repeat;
    }
    d.logit -= float(c) * p->freq + float(c > 0) * p->present;
}

// The same arithmetic as penalize(), on a bare logit.
float penalized(const Penalties* p, float logit, int32_t c) {
    logit = logit <= 0 ? logit * p->repeat : logit / p->repeat;
    return logit - (float(c) * p->freq + float(c > 0) * p->present);
}

// Greedy choice straight from the logits: the token llama_sampler_sample
// would return for a chain of [penalties,] greedy, without laying the whole
// vocabulary out as llama_token_data first (49k entries, 576 KiB for SmolLM2,
// written and then scanned for every token). Same comparison as llama.cpp's
// greedy sampler (the first strict maximum from index 0, NaN included), same
// penalty arithmetic as penalties_apply.
llama_token greedy_from_logits(const float* logits, int32_t n_vocab, const Penalties* pen) {
    if (pen == nullptr || pen->distinct.empty()) {
        int32_t best = 0;
        float best_v = logits[0];
        for (int32_t i = 1; i < n_vocab; ++i) {
            if (logits[i] > best_v) {
                best_v = logits[i];
                best = i;
            }
        }
        return best;
    }
    const int32_t* count = pen->count.data();
    auto value = [&](int32_t i) { return count[i] > 0 ? penalized(pen, logits[i], count[i]) : logits[i]; };
    int32_t best = 0;
    float best_v = value(0);
    for (int32_t i = 1; i < n_vocab; ++i) {
        float v = value(i);
        if (v > best_v) {
            best_v = v;
            best = i;
        }
    }
    return best;
}

const char* penalties_name(const llama_sampler*) { return "ev-penalties"; }

void penalties_accept(llama_sampler* s, llama_token tok) {
    auto* p = static_cast<Penalties*>(s->ctx);
    if (p->last_n <= 0 || tok < 0 || tok >= p->n_vocab) return;
    if (p->count[tok]++ == 0) p->distinct.push_back(tok);
    if (p->ring.size() < static_cast<size_t>(p->last_n)) {
        p->ring.push_back(tok);
        return;
    }
    llama_token old = p->ring[p->head];
    p->ring[p->head] = tok;
    p->head = (p->head + 1) % p->ring.size();
    if (--p->count[old] == 0) {
        auto it = std::find(p->distinct.begin(), p->distinct.end(), old);
        *it = p->distinct.back();
        p->distinct.pop_back();
    }
}

void penalties_apply(llama_sampler* s, llama_token_data_array* cur) {
    auto* p = static_cast<Penalties*>(s->ctx);
    if (p->distinct.empty()) return;
    // llama_sampler_sample lays out the whole vocabulary by id (a grammar
    // before us only masks logits): then each token is found by its index
    bool by_id = true;
    for (llama_token t : p->distinct) {
        if (static_cast<size_t>(t) >= cur->size || cur->data[t].id != t) {
            by_id = false;
            break;
        }
    }
    if (by_id) {
        for (llama_token t : p->distinct) penalize(p, cur->data[t], p->count[t]);
    } else {
        for (size_t i = 0; i < cur->size; ++i) {
            llama_token t = cur->data[i].id;
            if (t >= 0 && t < p->n_vocab && p->count[t] > 0) penalize(p, cur->data[i], p->count[t]);
        }
    }
    cur->sorted = false;
}

void penalties_reset(llama_sampler* s) {
    auto* p = static_cast<Penalties*>(s->ctx);
    for (llama_token t : p->distinct) p->count[t] = 0;
    p->distinct.clear();
    p->ring.clear();
    p->head = 0;
}

llama_sampler* penalties_clone(const llama_sampler* s);

void penalties_free(llama_sampler* s) { delete static_cast<Penalties*>(s->ctx); }

llama_sampler_i penalties_iface = {
    penalties_name, penalties_accept, penalties_apply, penalties_reset, penalties_clone, penalties_free,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
};

llama_sampler* penalties_clone(const llama_sampler* s) {
    auto* p = new Penalties(*static_cast<const Penalties*>(s->ctx));
    return llama_sampler_init(&penalties_iface, p);
}

// nullptr when the penalties are off (as llama_sampler_init_penalties would
// return an empty sampler).
llama_sampler* init_penalties(int32_t n_vocab, int32_t last_n, float repeat, float freq, float present) {
    if (last_n <= 0 || (repeat == 1.0f && freq == 0.0f && present == 0.0f)) return nullptr;
    auto* p = new Penalties{n_vocab, last_n, repeat, freq, present, {}, 0, std::vector<int32_t>(n_vocab, 0), {}};
    p->ring.reserve(static_cast<size_t>(last_n));
    return llama_sampler_init(&penalties_iface, p);
}

}  // namespace

// One generation. All methods except cancel-related reads run with the
// context lock held.
struct Generation {
    Engine* e;
    Params p;
    llama_sampler* smpl = nullptr;
    // greedy without grammar: pick from the logits directly (greedy_from_logits);
    // pen is the chain's penalties state then, or nullptr
    bool direct_greedy = false;
    const Penalties* pen = nullptr;
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

    ~Generation() {
        if (smpl) llama_sampler_free(smpl);
    }

    bool cancelled(const std::atomic<bool>* stream_cancel) const {
        return e->cancel_requested.load() || (stream_cancel && stream_cancel->load());
    }

    // Tokenize and build the sampler. Context lock held.
    ev_error_t prepare(const char* text) {
        t_start = Clock::now();
        out = TextOutput(p.stops);
        int len = static_cast<int>(strlen(text));
        bool add_bos = llama_vocab_get_add_bos(e->vocab);
        std::vector<llama_token> toks(len + 8);
        int n = llama_tokenize(e->vocab, text, len, toks.data(), (int)toks.size(), add_bos, /*parse_special=*/true);
        if (n < 0) {
            if (n == INT32_MIN) return set(EV_ERROR_INVALID_PARAM, "prompt is too long to tokenize");
            toks.resize(-n);
            n = llama_tokenize(e->vocab, text, len, toks.data(), (int)toks.size(), add_bos, true);
            if (n < 0) return set(EV_ERROR_INFERENCE_FAILED, "failed to tokenize the prompt");
        }
        toks.resize(n);
        if (toks.empty()) return set(EV_ERROR_INVALID_PARAM, "prompt is empty (no tokens)");
        int n_ctx = context_limit(e);
        if (n >= n_ctx) {
            return set(EV_ERROR_INVALID_PARAM, "prompt has " + std::to_string(n) +
                                                   " tokens but the context holds " + std::to_string(n_ctx) +
                                                   "; shorten it or raise context_size");
        }
        prompt = std::move(toks);
        stats.prompt_tokens = n;
        return build_sampler();
    }

    ev_error_t set(ev_error_t code, const std::string& msg) {
        e->set_error(msg);
        return code;
    }

    ev_error_t build_sampler() {
        auto sp = llama_sampler_chain_default_params();
        sp.no_perf = true;
        smpl = llama_sampler_chain_init(sp);
        if (!smpl) return set(EV_ERROR_OUT_OF_MEMORY, "cannot create the sampler");
        if (!p.grammar.empty()) {
            // First in the chain, so later filters only see tokens the grammar allows.
            llama_sampler* g = llama_sampler_init_grammar(e->vocab, p.grammar.c_str(), p.grammar_root.c_str());
            if (g == nullptr) {
                return set(EV_ERROR_INVALID_PARAM, "invalid grammar (GBNF parse failed, or root rule '" +
                                                       p.grammar_root + "' missing)");
            }
            llama_sampler_chain_add(smpl, g);
        }
        if (p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
            llama_sampler* pen = init_penalties(llama_vocab_n_tokens(e->vocab), 64, p.repeat_penalty,
                                                p.frequency_penalty, p.presence_penalty);
            if (pen) llama_sampler_chain_add(smpl, pen);
            this->pen = pen ? static_cast<const Penalties*>(pen->ctx) : nullptr;
        }
        if (p.temperature <= 0.0f) {
            // the chain stays complete (accept() keeps the penalty window)
            llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
            direct_greedy = p.grammar.empty();
            return EV_SUCCESS;
        }
        if (p.top_k > 0) llama_sampler_chain_add(smpl, llama_sampler_init_top_k(p.top_k));
        if (p.top_p < 1.0f) llama_sampler_chain_add(smpl, llama_sampler_init_top_p(p.top_p, 1));
        if (p.min_p > 0.0f) llama_sampler_chain_add(smpl, llama_sampler_init_min_p(p.min_p, 1));
        llama_sampler_chain_add(smpl, llama_sampler_init_temp(p.temperature));
        int64_t seed = p.seed == -2 ? e->config.seed : p.seed;
        uint32_t s = seed < 0 ? LLAMA_DEFAULT_SEED : static_cast<uint32_t>(seed);
        llama_sampler_chain_add(smpl, llama_sampler_init_dist(s));
        return EV_SUCCESS;
    }

    // The tokens in the KV cache after a failed or aborted llama_decode of
    // `batch` (n_batch tokens). llama.cpp keeps the ubatches it finished (a
    // prefix of the batch, when batch_size > 512) and drops the rest, so the
    // next call that starts with this prompt resumes it instead of redoing it.
    void resync_cache(const llama_token* batch, size_t n_batch) {
        llama_pos maxp = llama_memory_seq_pos_max(llama_get_memory(e->lctx), 0);
        size_t n = maxp < 0 ? 0 : static_cast<size_t>(maxp) + 1;
        size_t have = e->cached_tokens.size();
        if (have > n) {
            e->cached_tokens.resize(n);
        } else if (n > have) {
            if (n - have <= n_batch) {
                e->cached_tokens.insert(e->cached_tokens.end(), batch, batch + (n - have));
            } else {
                // tokens we cannot name: forget the cache entirely
                llama_memory_clear(llama_get_memory(e->lctx), true);
                e->cached_tokens.clear();
            }
        }
    }

    // Process the prompt, reusing the cached prefix. Context lock held.
    ev_error_t process_prompt(const std::atomic<bool>* stream_cancel) {
        started = true;
        llama_memory_t mem = llama_get_memory(e->lctx);
        size_t keep = 0;
        if (e->prompt_cache) {
            const auto& c = e->cached_tokens;
            while (keep < c.size() && keep < prompt.size() && c[keep] == prompt[keep]) ++keep;
            // The last prompt token is always decoded: its logits start sampling.
            if (keep == prompt.size()) --keep;
        }
        // Cells are reset, their bytes are not: cells not in use are masked out
        // (never read), and zeroing the whole KV buffer (47 MB for SmolLM2 at
        // 2048 tokens) cost ~2 ms before every uncached prompt.
        if (keep == 0) {
            llama_memory_clear(mem, false);
            e->cached_tokens.clear();
        } else if (!llama_memory_seq_rm(mem, 0, static_cast<llama_pos>(keep), -1)) {
            llama_memory_clear(mem, false);
            e->cached_tokens.clear();
            keep = 0;
        } else {
            e->cached_tokens.resize(keep);
        }
        stats.cached_tokens = static_cast<int>(keep);
        llama_sampler_reset(smpl);

        int n_batch = static_cast<int>(llama_n_batch(e->lctx));
        for (size_t i = keep; i < prompt.size(); i += n_batch) {
            if (cancelled(stream_cancel)) {
                finish(EV_FINISH_CANCELLED);
                return EV_SUCCESS;
            }
            int n = static_cast<int>(std::min<size_t>(n_batch, prompt.size() - i));
            int rc = llama_decode(e->lctx, llama_batch_get_one(prompt.data() + i, n));
            if (rc == 2 || (rc != 0 && cancelled(stream_cancel))) {
                resync_cache(prompt.data() + i, n);
                finish(EV_FINISH_CANCELLED);
                return EV_SUCCESS;
            }
            if (rc != 0) {
                resync_cache(prompt.data() + i, n);
                finish(EV_FINISH_ERROR);
                return set(EV_ERROR_INFERENCE_FAILED, "llama_decode failed on the prompt (code " + std::to_string(rc) + ")");
            }
            e->cached_tokens.insert(e->cached_tokens.end(), prompt.begin() + i, prompt.begin() + i + n);
        }
        // GPU backends (Vulkan, Metal) compute asynchronously: wait, so prompt_ms is the work's.
        llama_synchronize(e->lctx);
        stats.prompt_ms = ms_since(t_start);
        return EV_SUCCESS;
    }

    void finish(ev_finish_reason why) {
        if (done) return;
        done = true;
        stats.finish_reason = why;
        stats.generated_tokens = n_generated;
        if (n_generated > 0) stats.generation_ms = ms_since(t_first_sample);
    }

    void note_confidence() {
        if (p.confidence_threshold <= 0) return;
        const float* logits = llama_get_logits_ith(e->lctx, -1);
        int nv = llama_vocab_n_tokens(e->vocab);
        if (!logits || nv <= 1) return;
        float mx = logits[0];
        for (int i = 1; i < nv; ++i) mx = std::max(mx, logits[i]);
        double z = 0;
        for (int i = 0; i < nv; ++i) z += std::exp(double(logits[i] - mx));
        double h = 0;
        for (int i = 0; i < nv; ++i) {
            double q = std::exp(double(logits[i] - mx)) / z;
            if (q > 0) h -= q * std::log(q);
        }
        last_conf = static_cast<float>(1.0 - h / std::log(double(nv)));
        conf_sum += last_conf;
        ++conf_n;
        if (conf_n >= 3 && conf_sum / conf_n < p.confidence_threshold) handoff = true;
    }

    // The next safe text ("" with done set at the end). Context lock held.
    ev_error_t next(std::string* text, const std::atomic<bool>* stream_cancel) {
        text->clear();
        if (!started) {
            ev_error_t rc = process_prompt(stream_cancel);
            if (rc != EV_SUCCESS || done) {
                if (done) *text = out.finish();
                return rc;
            }
        }
        const int n_ctx = context_limit(e);
        while (!done) {
            if (cancelled(stream_cancel)) {
                finish(EV_FINISH_CANCELLED);
                break;
            }
            if (n_generated >= p.max_tokens) {
                finish(EV_FINISH_LENGTH);
                break;
            }
            if (has_pending) {
                if (static_cast<int>(e->cached_tokens.size()) >= n_ctx) {
                    finish(EV_FINISH_LENGTH);  // the context is full
                    break;
                }
                llama_token t = pending;
                int rc = llama_decode(e->lctx, llama_batch_get_one(&t, 1));
                if (rc == 2 || (rc != 0 && cancelled(stream_cancel))) {
                    resync_cache(&t, 1);
                    finish(EV_FINISH_CANCELLED);
                    break;
                }
                if (rc != 0) {
                    resync_cache(&t, 1);
                    finish(EV_FINISH_ERROR);
                    return set(EV_ERROR_INFERENCE_FAILED, "llama_decode failed while generating (code " + std::to_string(rc) + ")");
                }
                e->cached_tokens.push_back(t);
                has_pending = false;
            }
            llama_token tok;
            if (direct_greedy) {
                const float* logits = llama_get_logits_ith(e->lctx, -1);
                if (logits == nullptr) {  // llama_sampler_sample would abort here
                    finish(EV_FINISH_ERROR);
                    return set(EV_ERROR_INFERENCE_FAILED, "llama.cpp has no logits for the last token");
                }
                tok = greedy_from_logits(logits, llama_vocab_n_tokens(e->vocab), pen);
                llama_sampler_accept(smpl, tok);
            } else {
                tok = llama_sampler_sample(smpl, e->lctx, -1);
            }
            if (n_generated == 0) t_first_sample = Clock::now();
            note_confidence();
            if (llama_vocab_is_eog(e->vocab, tok)) {
                finish(EV_FINISH_STOP);
                break;
            }
            ++n_generated;
            generated.push_back(tok);
            pending = tok;
            has_pending = true;
            char buf[256];
            int n = llama_token_to_piece(e->vocab, tok, buf, sizeof buf, 0, /*special=*/false);
            std::string piece;
            if (n < 0) {
                piece.resize(-n);
                n = llama_token_to_piece(e->vocab, tok, &piece[0], (int)piece.size(), 0, false);
                if (n < 0) n = 0;
                piece.resize(n);
            } else {
                piece.assign(buf, n);
            }
            std::string safe = out.push(piece);
            if (out.stopped()) {
                finish(EV_FINISH_STOP);
                *text += safe;
                break;
            }
            if (!safe.empty()) {
                *text += safe;
                if (!first_text_seen) {
                    first_text_seen = true;
                    stats.first_token_ms = ms_since(t_start);
                }
                return EV_SUCCESS;
            }
        }
        *text += out.finish();
        if (!text->empty() && !first_text_seen) {
            first_text_seen = true;
            stats.first_token_ms = ms_since(t_start);
        }
        return EV_SUCCESS;
    }

    ev_generation_stats current_stats() const {
        ev_generation_stats s = stats;
        s.generated_tokens = n_generated;
        if (!done) {
            s.finish_reason = EV_FINISH_NONE;
            if (n_generated > 0) s.generation_ms = ms_since(t_first_sample);
        }
        return s;
    }
};

}  // namespace ev

struct ev_stream_impl {
    std::atomic<uint32_t> magic{ev::kStreamMagic};
    const uint32_t fork_generation = ev::fork_generation();  // the process it belongs to
    std::shared_ptr<ev::Engine> engine;
    std::mutex mutex;  // the stream lock (taken before the context lock)
    std::atomic<bool> cancel{false};
    std::atomic<bool> ended{false};
    // holds the context's one stream slot; written under the stream lock,
    // read without it by ev_stream_next after its call (another thread's
    // ev_stream_next may be deactivating the stream meanwhile)
    std::atomic<bool> active{true};
    ev::Generation gen;
};

using ev::Engine;
using ev::fail;

namespace {

void record_stats(Engine* e, const ev_generation_stats& s) {
    e->last_stats = s;
    ev::record_thread_stats(e, s);
}

// Drop the stream's claim on its context (once).
void deactivate(ev_stream s) {
    if (!s->active.exchange(false)) return;
    void* expected = s;
    s->engine->active_stream.compare_exchange_strong(expected, nullptr);
}

bool stream_live(ev_stream s) { return s != nullptr && s->magic.load() == ev::kStreamMagic; }
bool stream_inherited(ev_stream s) { return s->fork_generation != ev::fork_generation(); }
bool stream_ok(ev_stream s) { return stream_live(s) && !stream_inherited(s); }

// Why a stream handle cannot be used: stored as this thread's error.
ev_error_t stream_error(ev_stream s) {
    if (stream_live(s)) return fail(EV_ERROR_CONTEXT_INVALID, ev::inherited_handle_message());
    return fail(EV_ERROR_INVALID_PARAM, "stream is NULL or was freed");
}

}  // namespace

extern "C" {

static void ev_generation_params_default_impl(ev_generation_params* params) {
    if (params == nullptr) return;
    memset(params, 0, sizeof *params);
    params->max_tokens = 512;
    params->temperature = 0.8f;
    params->top_p = 0.95f;
    params->top_k = 40;
    params->repeat_penalty = 1.1f;
    params->frequency_penalty = 0.0f;
    params->presence_penalty = 0.0f;
    params->stop_sequences = nullptr;
    params->num_stop_sequences = 0;
    params->grammar_str = nullptr;
    params->grammar_root = nullptr;
    params->confidence_threshold = 0.0f;
    params->reserved = nullptr;
}

static void ev_generation_extras_default_impl(ev_generation_extras* extras) {
    if (extras == nullptr) return;
    memset(extras, 0, sizeof *extras);
    extras->struct_size = sizeof(ev_generation_extras);
    extras->seed = -2;
    extras->min_p = 0.0f;
}

static void ev_free_string_impl(char* str) { free(str); }

static ev_error_t ev_generate_impl(ev_context ctx, const char* prompt, const ev_generation_params* params,
                              char** output) {
    if (output != nullptr) *output = nullptr;
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code);
    if (!e) return code;
    if (prompt == nullptr) {
        e->set_error("ev_generate: prompt is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    if (output == nullptr) {
        e->set_error("ev_generate: output is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    {
        ev::Generation gen;
        gen.e = e;
        if ((code = ev::read_params(params, &gen.p)) != EV_SUCCESS) {
            e->set_error(ev::thread_error());
            return code;
        }
        std::string text;
        {
            std::lock_guard<std::mutex> lock(e->mutex);
            if (e->model == nullptr) {
                e->set_error("the model is not loaded");
                return EV_ERROR_CONTEXT_INVALID;
            }
            if (e->active_stream.load() != nullptr) {
                e->set_error("ev_generate: a stream is active on this context; free it first");
                return EV_ERROR_CONTEXT_INVALID;
            }
            e->busy.store(true);
            e->cancel_requested.store(false);
            struct Busy {
                Engine* e;
                ~Busy() { e->busy.store(false); }
            } busy{e};
            if ((code = gen.prepare(prompt)) != EV_SUCCESS) return code;
            std::string piece;
            while (!gen.done) {
                if ((code = gen.next(&piece, nullptr)) != EV_SUCCESS) break;
                text += piece;
            }
            record_stats(e, gen.current_stats());
            e->refresh_memory_locked();
        }
        if (code != EV_SUCCESS) return code;
        *output = ev::dup_cstr(text);
        if (*output == nullptr) {
            e->set_error("out of memory copying the output");
            return EV_ERROR_OUT_OF_MEMORY;
        }
        return EV_SUCCESS;
    }
}

static ev_error_t ev_generate_cancel_impl(ev_context ctx) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code, /*need_model=*/false);
    if (!e) return code;
    if (e->busy.load() || e->active_stream.load() != nullptr) e->cancel_requested.store(true);
    return EV_SUCCESS;
}

static ev_error_t ev_get_last_generation_stats_impl(ev_context ctx, ev_generation_stats* stats) {
    ev_error_t code;
    Engine* e = ev_engine_of(ctx, &code, /*need_model=*/false);
    if (!e) return code;
    if (stats == nullptr) {
        e->set_error("stats is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    if (ev::thread_stats(e, stats)) return EV_SUCCESS;
    std::lock_guard<std::mutex> lock(e->mutex);
    *stats = e->last_stats;
    return EV_SUCCESS;
}

static ev_stream ev_generate_stream_impl(ev_context ctx, const char* prompt, const ev_generation_params* params,
                                    ev_error_t* error) {
    ev_error_t dummy;
    if (error == nullptr) error = &dummy;
    Engine* e = ev_engine_of(ctx, error);
    if (!e) return nullptr;
    if (prompt == nullptr) {
        e->set_error("ev_generate_stream: prompt is NULL");
        *error = EV_ERROR_INVALID_PARAM;
        return nullptr;
    }
    {
        auto* s = new (std::nothrow) ev_stream_impl();
        if (s == nullptr) {
            e->set_error("out of memory creating the stream");
            *error = EV_ERROR_OUT_OF_MEMORY;
            return nullptr;
        }
        s->engine = ctx->engine;
        s->gen.e = e;
        if ((*error = ev::read_params(params, &s->gen.p)) != EV_SUCCESS) {
            e->set_error(ev::thread_error());
            s->active = false;
            delete s;
            return nullptr;
        }
        std::lock_guard<std::mutex> lock(e->mutex);
        if (e->model == nullptr) {
            e->set_error("the model is not loaded");
            *error = EV_ERROR_CONTEXT_INVALID;
            s->active = false;
            delete s;
            return nullptr;
        }
        void* expected = nullptr;
        if (!e->active_stream.compare_exchange_strong(expected, s)) {
            e->set_error("another stream is active on this context; free it first (one stream per context)");
            *error = EV_ERROR_CONTEXT_INVALID;
            s->active = false;
            delete s;
            return nullptr;
        }
        e->cancel_requested.store(false);
        if ((*error = s->gen.prepare(prompt)) != EV_SUCCESS) {
            deactivate(s);
            delete s;
            return nullptr;
        }
        *error = EV_SUCCESS;
        return s;
    }
}

static char* ev_stream_next_impl(ev_stream stream, ev_error_t* error) {
    ev_error_t dummy;
    if (error == nullptr) error = &dummy;
    if (!stream_ok(stream)) {
        *error = stream_error(stream);
        return nullptr;
    }
    std::lock_guard<std::mutex> slock(stream->mutex);
    Engine* e = stream->engine.get();
    if (stream->ended.load()) {
        *error = fail(EV_ERROR_STREAM_ENDED, stream->cancel.load() ? "the stream was cancelled" : "the stream has ended");
        return nullptr;
    }
    if (stream->cancel.load()) {
        stream->ended.store(true);
        std::lock_guard<std::mutex> lock(e->mutex);
        stream->gen.finish(EV_FINISH_CANCELLED);
        deactivate(stream);
        *error = fail(EV_ERROR_STREAM_ENDED, "the stream was cancelled");
        return nullptr;
    }
    if (e->freed.load() || e->unloaded.load()) {
        stream->ended.store(true);
        *error = fail(EV_ERROR_CONTEXT_INVALID, "the stream's context was freed or its model unloaded");
        return nullptr;
    }
    std::string text;
    ev_error_t code;
    bool finished;
    {
        std::lock_guard<std::mutex> lock(e->mutex);
        if (e->model == nullptr) {
            stream->ended.store(true);
            *error = fail(EV_ERROR_CONTEXT_INVALID, "the stream's context has no model");
            return nullptr;
        }
        code = stream->gen.next(&text, &stream->cancel);
        finished = stream->gen.done;
        if (finished) {
            record_stats(e, stream->gen.current_stats());
            e->refresh_memory_locked();
            deactivate(stream);
        }
    }
    if (code != EV_SUCCESS) {
        stream->ended.store(true);
        *error = code;
        return nullptr;
    }
    if (text.empty()) {
        // finished with nothing more to say; a cancel (ev_stream_cancel from
        // another thread during this call, or ev_generate_cancel) ends the
        // stream with STREAM_ENDED, as documented
        stream->ended.store(true);
        if (stream->gen.stats.finish_reason == EV_FINISH_CANCELLED) {
            *error = fail(EV_ERROR_STREAM_ENDED, "the stream was cancelled");
        } else {
            *error = EV_SUCCESS;
        }
        return nullptr;
    }
    // A final piece: the next call returns the end.
    char* out = ev::dup_cstr(text);
    if (out == nullptr) {
        *error = fail(EV_ERROR_OUT_OF_MEMORY, "out of memory copying a piece");
        return nullptr;
    }
    *error = EV_SUCCESS;
    return out;
}

static bool ev_stream_has_next_impl(ev_stream stream) {
    if (!stream_ok(stream)) return false;
    if (stream->ended.load() || stream->cancel.load()) return false;
    // ev_generate_cancel() on the context cancels its active stream too.
    const auto& e = stream->engine;
    return !(e->cancel_requested.load() && e->active_stream.load() == stream);
}

static void ev_stream_cancel_impl(ev_stream stream) {
    if (!stream_ok(stream)) return;
    stream->cancel.store(true);
    // Interrupt a decode in progress through the context's abort flag.
    if (stream->engine->active_stream.load() == stream) stream->engine->cancel_requested.store(true);
}

static void ev_stream_free_impl(ev_stream stream) {
    if (!stream_live(stream)) return;
    if (stream_inherited(stream)) {
        // a fork()ed child's copy of the parent's stream: forget it, touch
        // nothing (see ev_free)
        stream->magic.store(ev::kDeadMagic);
        return;
    }
    {
        std::lock_guard<std::mutex> slock(stream->mutex);
        stream->magic.store(ev::kDeadMagic);
        deactivate(stream);
        stream->ended.store(true);
    }
    std::shared_ptr<Engine> e = stream->engine;
    {
        // The sampler is freed under the context lock: it may reference the vocab.
        std::lock_guard<std::mutex> lock(e->mutex);
        if (stream->gen.smpl) {
            llama_sampler_free(stream->gen.smpl);
            stream->gen.smpl = nullptr;
        }
    }
    delete stream;
    if (e->pressure_check_pending.load() && !e->freed.load()) e->check_pressure();
}

static ev_error_t ev_stream_get_token_info_impl(ev_stream stream, ev_stream_token_info* info) {
    if (!stream_ok(stream)) return stream_error(stream);
    if (info == nullptr) return fail(EV_ERROR_INVALID_PARAM, "info is NULL");
    std::lock_guard<std::mutex> slock(stream->mutex);
    const auto& g = stream->gen;
    info->confidence = g.last_conf;
    info->avg_confidence = g.conf_n > 0 ? static_cast<float>(g.conf_sum / g.conf_n) : -1.f;
    info->needs_cloud_handoff = g.handoff;
    info->token_index = g.n_generated;
    return EV_SUCCESS;
}

static ev_error_t ev_stream_get_stats_impl(ev_stream stream, ev_generation_stats* stats) {
    if (!stream_ok(stream)) return stream_error(stream);
    if (stats == nullptr) return fail(EV_ERROR_INVALID_PARAM, "stats is NULL");
    std::lock_guard<std::mutex> slock(stream->mutex);
    *stats = stream->gen.current_stats();
    return EV_SUCCESS;
}

// ---- entry points ----

EV_API void ev_generation_params_default(ev_generation_params* params) {
    ev::guard_quiet("ev_generation_params_default", [&] { ev_generation_params_default_impl(params); });
}

EV_API void ev_generation_extras_default(ev_generation_extras* extras) {
    ev::guard_quiet("ev_generation_extras_default", [&] { ev_generation_extras_default_impl(extras); });
}

EV_API void ev_free_string(char* str) { ev_free_string_impl(str); }  // free(): cannot throw

EV_API ev_error_t ev_generate(ev_context ctx, const char* prompt, const ev_generation_params* params,
                              char** output) {
    ev_error_t rc = ev::guard_compute("ev_generate", EV_ERROR_INFERENCE_FAILED, ctx,
                                      [&] { return ev_generate_impl(ctx, prompt, params, output); });
    ev::pressure_safe_point(ctx);
    return rc;
}

EV_API ev_error_t ev_generate_cancel(ev_context ctx) {
    return ev::guard("ev_generate_cancel", EV_ERROR_UNKNOWN, ctx, [&] { return ev_generate_cancel_impl(ctx); });
}

EV_API ev_error_t ev_get_last_generation_stats(ev_context ctx, ev_generation_stats* stats) {
    return ev::guard("ev_get_last_generation_stats", EV_ERROR_UNKNOWN, ctx,
                     [&] { return ev_get_last_generation_stats_impl(ctx, stats); });
}

EV_API ev_stream ev_generate_stream(ev_context ctx, const char* prompt, const ev_generation_params* params,
                                    ev_error_t* error) {
    return ev::guard_out_compute("ev_generate_stream", EV_ERROR_INFERENCE_FAILED, ctx, ev_stream{nullptr}, error,
                                 [&] { return ev_generate_stream_impl(ctx, prompt, params, error); });
}

EV_API char* ev_stream_next(ev_stream stream, ev_error_t* error) {
    char* piece = ev::guard_out_compute("ev_stream_next", EV_ERROR_INFERENCE_FAILED, nullptr,
                                        static_cast<char*>(nullptr), error,
                                        [&] { return ev_stream_next_impl(stream, error); });
    // a limit set during the stream is checked once the stream has let go of
    // its context (while it is active, check_pressure() only re-arms the flag)
    if (stream_ok(stream) && !stream->active) ev::pressure_safe_point(stream->engine.get());
    return piece;
}

EV_API bool ev_stream_has_next(ev_stream stream) {
    return ev::guard_quiet("ev_stream_has_next", false, [&] { return ev_stream_has_next_impl(stream); });
}

EV_API void ev_stream_cancel(ev_stream stream) {
    ev::guard_quiet("ev_stream_cancel", [&] { ev_stream_cancel_impl(stream); });
}

EV_API void ev_stream_free(ev_stream stream) {
    ev::guard_quiet("ev_stream_free", [&] { ev_stream_free_impl(stream); });
}

EV_API ev_error_t ev_stream_get_token_info(ev_stream stream, ev_stream_token_info* info) {
    return ev::guard("ev_stream_get_token_info", EV_ERROR_UNKNOWN, nullptr,
                     [&] { return ev_stream_get_token_info_impl(stream, info); });
}

EV_API ev_error_t ev_stream_get_stats(ev_stream stream, ev_generation_stats* stats) {
    return ev::guard("ev_stream_get_stats", EV_ERROR_UNKNOWN, nullptr,
                     [&] { return ev_stream_get_stats_impl(stream, stats); });
}

}  // extern "C"

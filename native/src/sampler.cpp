// The sampler of a generation: llama.cpp's sampler chain, with our own
// penalties sampler in it, and greedy picks straight from the logits.
#include "generation.h"

#include <algorithm>
#include <cmath>

namespace ev {

// The repeat/frequency/presence penalties of llama.cpp's penalties sampler,
// with the same window and the same arithmetic (bit-identical logits), but
// applied only to the <= 64 distinct tokens of the window.
//
// Why not llama_sampler_init_penalties (llama.h): it gives the same logits,
// but its apply() looks every candidate up in a hash map: ~49k lookups per
// token for SmolLM2's vocabulary, about as long as the rest of sampling
// (425 -> 133 us/token, benchmarks/README.md). greedy_from_logits also reads
// this state to apply the penalties inline. ctest model_sampling checks that
// the text equals llama.cpp's own chain for 5 penalty settings x 3 prompts.
struct Penalties {
    int32_t n_vocab, last_n;
    float repeat, freq, present;
    std::vector<llama_token> ring;      // the window; once full, head is the oldest
    size_t head = 0;
    std::vector<int32_t> count;         // occurrences in the window, per token id
    std::vector<llama_token> distinct;  // the ids whose count is > 0
};

namespace {

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

// ---- the logprobs recorder: a sampler that only looks ----

// log-sum-exp (in double, by id, so the chain and the fast path agree to the
// bit) and the k best ids of lp->vals.
void finish_dist(LogprobDist* lp) {
    const std::vector<float>& v = lp->vals;
    float mx = -INFINITY;
    for (float x : v) {
        if (x > mx) mx = x;  // NaN never compares greater
    }
    double z = 0;
    if (std::isfinite(mx)) {
        for (float x : v) {
            if (x > -INFINITY) z += std::exp(double(x) - double(mx));
        }
    }
    lp->log_z = std::isfinite(mx) && z > 0 ? double(mx) + std::log(z) : 0;
    lp->top.clear();
    if (lp->k <= 0) return;
    auto& order = lp->order;
    order.clear();
    for (int32_t i = 0; i < lp->n_vocab; ++i) {
        if (v[i] > -INFINITY) order.push_back(i);
    }
    size_t k = std::min<size_t>(static_cast<size_t>(lp->k), order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](llama_token a, llama_token b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
    lp->top.assign(order.begin(), order.begin() + k);
}

const char* recorder_name(const llama_sampler*) { return "ev-logprobs"; }

void recorder_apply(llama_sampler* s, llama_token_data_array* cur) {
    auto* lp = static_cast<LogprobDist*>(s->ctx);
    std::fill(lp->vals.begin(), lp->vals.end(), -INFINITY);
    for (size_t i = 0; i < cur->size; ++i) {
        llama_token t = cur->data[i].id;
        if (t >= 0 && t < lp->n_vocab) lp->vals[t] = cur->data[i].logit;
    }
    finish_dist(lp);
}

llama_sampler* recorder_clone(const llama_sampler* s);

void recorder_free(llama_sampler* s) { delete static_cast<LogprobDist*>(s->ctx); }

llama_sampler_i recorder_iface = {
    recorder_name, nullptr, recorder_apply, nullptr, recorder_clone, recorder_free,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
};

llama_sampler* recorder_clone(const llama_sampler* s) {
    return llama_sampler_init(&recorder_iface, new LogprobDist(*static_cast<const LogprobDist*>(s->ctx)));
}

}  // namespace

void logprobs_from_logits(LogprobDist* lp, const float* logits, const Penalties* pen) {
    float* v = lp->vals.data();
    if (pen == nullptr || pen->distinct.empty()) {
        std::copy(logits, logits + lp->n_vocab, v);
    } else {
        const int32_t* count = pen->count.data();
        for (int32_t i = 0; i < lp->n_vocab; ++i) v[i] = count[i] > 0 ? penalized(pen, logits[i], count[i]) : logits[i];
    }
    finish_dist(lp);
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

ev_error_t build_sampler(const llama_vocab* vocab, const Params& p, int64_t config_seed, Sampler* out,
                         std::string* why) {
    *out = Sampler{};
    auto sp = llama_sampler_chain_default_params();
    sp.no_perf = true;
    llama_sampler* smpl = llama_sampler_chain_init(sp);
    if (!smpl) {
        *why = "cannot create the sampler";
        return EV_ERROR_OUT_OF_MEMORY;
    }
    if (!p.grammar.empty()) {
        // First in the chain, so later filters only see tokens the grammar allows.
        llama_sampler* g = llama_sampler_init_grammar(vocab, p.grammar.c_str(), p.grammar_root.c_str());
        if (g == nullptr) {
            llama_sampler_free(smpl);
            *why = "invalid grammar (GBNF parse failed, or root rule '" + p.grammar_root + "' missing)";
            return EV_ERROR_INVALID_PARAM;
        }
        llama_sampler_chain_add(smpl, g);
    }
    out->chain = smpl;
    if (!p.logit_bias.empty()) {
        int32_t n_vocab = llama_vocab_n_tokens(vocab);
        for (size_t i = 0; i < p.logit_bias.size(); ++i) {
            llama_token t = p.logit_bias[i].token;
            if (t < 0 || t >= n_vocab) {
                llama_sampler_free(smpl);
                *out = Sampler{};
                *why = "extras.logit_bias[" + std::to_string(i) + "].token " + std::to_string(t) +
                       " is not in the vocabulary [0, " + std::to_string(n_vocab) + ")";
                return EV_ERROR_INVALID_PARAM;
            }
        }
        // after the grammar mask, before the penalties: the logits OpenAI's
        // logit_bias means (llama.cpp's common sampler puts it first too)
        llama_sampler_chain_add(smpl, llama_sampler_init_logit_bias(
                                          n_vocab, static_cast<int32_t>(p.logit_bias.size()), p.logit_bias.data()));
    }
    if (p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
        llama_sampler* pen = init_penalties(llama_vocab_n_tokens(vocab), 64, p.repeat_penalty, p.frequency_penalty,
                                            p.presence_penalty);
        if (pen) llama_sampler_chain_add(smpl, pen);
        out->pen = pen ? static_cast<const Penalties*>(pen->ctx) : nullptr;
    }
    if (p.top_logprobs >= 0) {
        // after grammar and penalties, before temperature and truncation
        int32_t n_vocab = llama_vocab_n_tokens(vocab);
        auto* lp = new LogprobDist{n_vocab, p.top_logprobs, std::vector<float>(n_vocab), 0, {}, {}};
        llama_sampler_chain_add(smpl, llama_sampler_init(&recorder_iface, lp));
        out->lp = lp;
    }
    if (p.temperature <= 0.0f) {
        // the chain stays complete (accept() keeps the penalty window)
        llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
        // the fast path reads the raw logits: only for a chain of [penalties,] greedy
        out->direct_greedy = p.grammar.empty() && p.logit_bias.empty();
        return EV_SUCCESS;
    }
    if (p.top_k > 0) llama_sampler_chain_add(smpl, llama_sampler_init_top_k(p.top_k));
    if (p.top_p < 1.0f) llama_sampler_chain_add(smpl, llama_sampler_init_top_p(p.top_p, 1));
    if (p.min_p > 0.0f) llama_sampler_chain_add(smpl, llama_sampler_init_min_p(p.min_p, 1));
    llama_sampler_chain_add(smpl, llama_sampler_init_temp(p.temperature));
    int64_t seed = p.seed == -2 ? config_seed : p.seed;
    uint32_t s = seed < 0 ? LLAMA_DEFAULT_SEED : static_cast<uint32_t>(seed);
    llama_sampler_chain_add(smpl, llama_sampler_init_dist(s));
    return EV_SUCCESS;
}

}  // namespace ev

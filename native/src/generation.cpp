// The generation state machine: tokenize, process the prompt (reusing the
// prompt cache), then sample and decode token by token, handing out text
// through TextOutput (whole UTF-8 characters, stop sequences held back and
// never emitted), with cancel, confidence and stats.
#include "generation.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace ev {

namespace {
double ms_since(Generation::Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Generation::Clock::now() - t0).count();
}
}  // namespace

// llama.cpp rounds n_ctx up to a multiple of 256, so llama_n_ctx() alone
// would let a context_size of 64 hold 256 tokens.
int context_limit(const Engine* e) {
    int n = static_cast<int>(llama_n_ctx(e->lctx));
    if (e->config.context_size > 0 && e->config.context_size < n) n = e->config.context_size;
    return n;
}

char* dup_cstr(const std::string& s) {
    char* p = static_cast<char*>(malloc(s.size() + 1));
    if (p) memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

void record_stats(Engine* e, const ev_generation_stats& s) {
    e->last_stats = s;
    record_thread_stats(e, s);
}

namespace {
// What ev_logprobs.internal points at: the entries and the C views of them.
struct ExportedLogprobs {
    std::shared_ptr<const LogprobList> list;
    std::vector<ev_token_logprob> tokens;
    std::vector<ev_top_logprob> tops;
};
}  // namespace

void export_logprobs(std::shared_ptr<const LogprobList> list, ev_logprobs* out) {
    *out = ev_logprobs{};
    if (!list || list->empty()) return;
    auto x = std::make_unique<ExportedLogprobs>();
    x->list = std::move(list);
    size_t n_top = 0;
    for (const auto& t : *x->list) n_top += t.top.size();
    x->tops.reserve(n_top);  // no reallocation: tokens point into it
    x->tokens.reserve(x->list->size());
    for (const auto& t : *x->list) {
        const ev_top_logprob* first = x->tops.data() + x->tops.size();
        for (const auto& a : t.top) x->tops.push_back(ev_top_logprob{a.token, a.text.c_str(), a.text.size(), a.logprob});
        x->tokens.push_back(ev_token_logprob{t.token, t.text.c_str(), t.text.size(), t.logprob,
                                             t.top.empty() ? nullptr : first, static_cast<int32_t>(t.top.size())});
    }
    out->tokens = x->tokens.data();
    out->num_tokens = x->tokens.size();
    out->internal = x.release();
}

void free_logprobs(ev_logprobs* out) {
    delete static_cast<ExportedLogprobs*>(out->internal);
    *out = ev_logprobs{};
}

Generation::~Generation() {
    if (smpl) llama_sampler_free(smpl);
}

bool Generation::cancelled(const std::atomic<bool>* stream_cancel) const {
    return e->cancel_requested.load() || (stream_cancel && stream_cancel->load());
}

ev_error_t Generation::set(ev_error_t code, const std::string& msg) {
    e->set_error(msg);
    return code;
}

ev_error_t Generation::prepare(const char* text) {
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
        return set(EV_ERROR_INVALID_PARAM, "prompt has " + std::to_string(n) + " tokens but the context holds " +
                                               std::to_string(n_ctx) + "; shorten it or raise context_size");
    }
    prompt = std::move(toks);
    stats.prompt_tokens = n;
    Sampler s;
    std::string why;
    ev_error_t rc = build_sampler(e->vocab, p, e->config.seed, &s, &why);
    if (rc != EV_SUCCESS) return set(rc, why);
    smpl = s.chain;
    direct_greedy = s.direct_greedy;
    pen = s.pen;
    lp = s.lp;
    return EV_SUCCESS;
}

// The tokens in the KV cache after a failed or aborted llama_decode of
// `batch` (n_batch tokens). llama.cpp keeps the ubatches it finished (a
// prefix of the batch, when batch_size > 512) and drops the rest, so the
// next call that starts with this prompt resumes it instead of redoing it.
void Generation::resync_cache(const llama_token* batch, size_t n_batch) {
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

// Process the prompt, reusing the cached prefix.
ev_error_t Generation::process_prompt(const std::atomic<bool>* stream_cancel) {
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

    std::string no_room;
    if (keep < prompt.size() && ev::check_worker_threads(e->n_threads, &no_room) != EV_SUCCESS) {
        finish(EV_FINISH_ERROR);
        return set(EV_ERROR_OUT_OF_MEMORY, no_room);
    }
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
        ev::worker_threads_started(e->n_threads);
    }
    // GPU backends (Vulkan, Metal) compute asynchronously: wait, so prompt_ms is the work's.
    llama_synchronize(e->lctx);
    stats.prompt_ms = ms_since(t_start);
    return EV_SUCCESS;
}

void Generation::finish(ev_finish_reason why) {
    if (done) return;
    done = true;
    stats.finish_reason = why;
    stats.generated_tokens = n_generated;
    if (n_generated > 0) stats.generation_ms = ms_since(t_first_sample);
}

void Generation::note_confidence() {
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

void Generation::note_first_text() {
    if (first_text_seen) return;
    first_text_seen = true;
    stats.first_token_ms = ms_since(t_start);
}

// The token's bytes as the output gets them (special tokens render as "").
std::string Generation::token_text(llama_token t) const {
    char buf[256];
    int n = llama_token_to_piece(e->vocab, t, buf, sizeof buf, 0, /*special=*/false);
    if (n >= 0) return std::string(buf, n);
    std::string piece(-n, '\0');
    n = llama_token_to_piece(e->vocab, t, &piece[0], (int)piece.size(), 0, false);
    piece.resize(n < 0 ? 0 : n);
    return piece;
}

// The generated token's entry from the distribution lp holds for this step.
void Generation::note_logprobs(llama_token tok, const std::string& text) {
    TokenLogprob entry{tok, text, lp->logprob(tok), {}};
    entry.top.reserve(lp->top.size());
    for (llama_token t : lp->top) entry.top.push_back(TopLogprob{t, token_text(t), lp->logprob(t)});
    logprobs.push_back(std::move(entry));
}

ev_error_t Generation::next(std::string* text, const std::atomic<bool>* stream_cancel) {
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
            // before accept: the penalties the pick saw
            if (lp) logprobs_from_logits(lp, logits, pen);
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
        std::string piece = token_text(tok);
        if (lp) note_logprobs(tok, piece);
        std::string safe = out.push(piece);
        if (out.stopped()) {
            finish(EV_FINISH_STOP);
            *text += safe;
            break;
        }
        if (!safe.empty()) {
            *text += safe;
            note_first_text();
            return EV_SUCCESS;
        }
    }
    *text += out.finish();
    if (!text->empty()) note_first_text();
    return EV_SUCCESS;
}

ev_generation_stats Generation::current_stats() const {
    ev_generation_stats s = stats;
    s.generated_tokens = n_generated;
    if (!done) {
        s.finish_reason = EV_FINISH_NONE;
        if (n_generated > 0) s.generation_ms = ms_since(t_first_sample);
    }
    return s;
}

}  // namespace ev

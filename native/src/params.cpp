// Generation parameters: the defaults (ev_generation_params_default,
// ev_generation_extras_default) and their validation into a Params.
#include "generation.h"
#include "guard.h"

#include <cmath>
#include <cstddef>
#include <cstring>

namespace ev {

namespace {
bool finite(float v) { return std::isfinite(v); }

// The token ids are checked against the vocabulary when the sampler is built
// (build_sampler), where the model is known.
ev_error_t read_logit_bias(const ev_logit_bias* in, int32_t n, std::vector<llama_logit_bias>* out) {
    if (n < 0) return fail(EV_ERROR_INVALID_PARAM, "extras.num_logit_bias must be >= 0");
    if (n > 0 && in == nullptr) {
        return fail(EV_ERROR_INVALID_PARAM, "extras.logit_bias is NULL but num_logit_bias > 0");
    }
    out->reserve(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) {
        float b = in[i].bias;
        if (std::isnan(b) || b == INFINITY) {
            return fail(EV_ERROR_INVALID_PARAM, "extras.logit_bias[" + std::to_string(i) +
                                                    "].bias must be finite or -INFINITY");
        }
        out->push_back(llama_logit_bias{in[i].token, b});
    }
    return EV_SUCCESS;
}
}  // namespace

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
    out->top_logprobs = -1;
    out->logit_bias.clear();
    if (p.reserved != nullptr) {
        const auto* x = static_cast<const ev_generation_extras*>(p.reserved);
        // the structs of 1.3 (ending before top_logprobs) and of 1.4-1.5
        // (ending before logit_bias) are still accepted: what they lack is off
        constexpr size_t v13_size = offsetof(ev_generation_extras, top_logprobs);
        constexpr size_t v14_size = offsetof(ev_generation_extras, logit_bias);
        if (x->struct_size != sizeof(ev_generation_extras) && x->struct_size != v13_size &&
            x->struct_size != v14_size) {
            return fail(EV_ERROR_INVALID_PARAM,
                        "params.reserved must be NULL or an ev_generation_extras with struct_size set");
        }
        if (x->seed < -2 || x->seed > 0xFFFFFFFELL) return fail(EV_ERROR_INVALID_PARAM, "extras.seed must be -2, -1 or in [0, 2^32-2]");
        if (!finite(x->min_p) || x->min_p < 0 || x->min_p > 1) return fail(EV_ERROR_INVALID_PARAM, "extras.min_p must be in [0, 1]");
        out->seed = x->seed;
        out->min_p = x->min_p;
        if (x->struct_size >= v14_size) {
            if (x->top_logprobs < -1 || x->top_logprobs > 20) {
                return fail(EV_ERROR_INVALID_PARAM, "extras.top_logprobs must be -1 (off) or in [0, 20]");
            }
            out->top_logprobs = x->top_logprobs;
        }
        if (x->struct_size == sizeof(ev_generation_extras)) {
            ev_error_t e = read_logit_bias(x->logit_bias, x->num_logit_bias, &out->logit_bias);
            if (e != EV_SUCCESS) return e;
        }
    }
    return EV_SUCCESS;
}

}  // namespace ev

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
    extras->top_logprobs = -1;
    extras->logit_bias = nullptr;
    extras->num_logit_bias = 0;
}

// ---- entry points ----

EV_API void ev_generation_params_default(ev_generation_params* params) {
    ev::guard_quiet("ev_generation_params_default", [&] { ev_generation_params_default_impl(params); });
}

EV_API void ev_generation_extras_default(ev_generation_extras* extras) {
    ev::guard_quiet("ev_generation_extras_default", [&] { ev_generation_extras_default_impl(extras); });
}

}  // extern "C"

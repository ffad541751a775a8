// Tokenizer access and the model's chat template.
#include "ev_internal.h"
#include "guard.h"
#include "text_output.h"

#include <cstdlib>
#include <cstring>
#include <new>

using ev::Engine;

// The impls run under the context lock with the model loaded (with_engine,
// kLocked).
extern "C" {

static ev_error_t ev_tokenize_impl(Engine* e, const char* text, bool add_special, bool parse_special,
                                   int32_t** tokens, int* num_tokens) {
    if (text == nullptr || tokens == nullptr || num_tokens == nullptr) {
        e->set_error("ev_tokenize: text, tokens and num_tokens must not be NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    *tokens = nullptr;
    *num_tokens = 0;
    size_t len = strlen(text);
    if (len > INT32_MAX / 2) {
        e->set_error("ev_tokenize: text is too long");
        return EV_ERROR_INVALID_PARAM;
    }
    int cap = static_cast<int>(len) + 8;
    auto* buf = static_cast<int32_t*>(malloc(sizeof(int32_t) * cap));
    if (!buf) {
        e->set_error("out of memory");
        return EV_ERROR_OUT_OF_MEMORY;
    }
    int n = llama_tokenize(e->vocab, text, static_cast<int>(len), buf, cap, add_special, parse_special);
    if (n < 0 && n != INT32_MIN) {
        cap = -n;
        auto* bigger = static_cast<int32_t*>(realloc(buf, sizeof(int32_t) * cap));
        if (!bigger) {
            free(buf);
            e->set_error("out of memory");
            return EV_ERROR_OUT_OF_MEMORY;
        }
        buf = bigger;
        n = llama_tokenize(e->vocab, text, static_cast<int>(len), buf, cap, add_special, parse_special);
    }
    if (n < 0) {
        free(buf);
        e->set_error("tokenization failed");
        return EV_ERROR_INFERENCE_FAILED;
    }
    *tokens = buf;
    *num_tokens = n;
    return EV_SUCCESS;
}

static void ev_free_tokens_impl(int32_t* tokens) { free(tokens); }

static ev_error_t ev_detokenize_impl(Engine* e, const int32_t* tokens, int num_tokens, bool special,
                                     char** output) {
    if (output == nullptr || (tokens == nullptr && num_tokens > 0) || num_tokens < 0) {
        e->set_error("ev_detokenize: bad arguments (NULL output or tokens, or negative count)");
        return EV_ERROR_INVALID_PARAM;
    }
    *output = nullptr;
    int nv = llama_vocab_n_tokens(e->vocab);
    for (int i = 0; i < num_tokens; ++i) {
        if (tokens[i] < 0 || tokens[i] >= nv) {
            e->set_error("ev_detokenize: token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                         " is outside the vocabulary (0.." + std::to_string(nv - 1) + ")");
            return EV_ERROR_INVALID_PARAM;
        }
    }
    std::string s(static_cast<size_t>(num_tokens) * 8 + 16, '\0');
    int n = llama_detokenize(e->vocab, tokens, num_tokens, &s[0], static_cast<int>(s.size()), false, special);
    if (n < 0) {
        s.resize(-n);
        n = llama_detokenize(e->vocab, tokens, num_tokens, &s[0], static_cast<int>(s.size()), false, special);
    }
    if (n < 0) {
        e->set_error("detokenization failed");
        return EV_ERROR_INFERENCE_FAILED;
    }
    s.resize(n);
    s = ev::utf8_sanitize(s);
    char* out = static_cast<char*>(malloc(s.size() + 1));
    if (!out) {
        e->set_error("out of memory");
        return EV_ERROR_OUT_OF_MEMORY;
    }
    memcpy(out, s.c_str(), s.size() + 1);
    *output = out;
    return EV_SUCCESS;
}

static ev_error_t ev_chat_apply_template_impl(Engine* e, const ev_chat_message* messages, size_t num_messages,
                                              bool add_assistant, char** output) {
    if (output == nullptr || (messages == nullptr && num_messages > 0)) {
        e->set_error("ev_chat_apply_template: output or messages is NULL");
        return EV_ERROR_INVALID_PARAM;
    }
    *output = nullptr;
    std::vector<llama_chat_message> msgs(num_messages);
    size_t total = 0;
    for (size_t i = 0; i < num_messages; ++i) {
        if (messages[i].role == nullptr || messages[i].content == nullptr) {
            e->set_error("ev_chat_apply_template: message " + std::to_string(i) + " has a NULL role or content");
            return EV_ERROR_INVALID_PARAM;
        }
        msgs[i].role = messages[i].role;
        msgs[i].content = messages[i].content;
        total += strlen(messages[i].content) + strlen(messages[i].role);
    }
    // The model's own template; ChatML when the GGUF carries none.
    const char* tmpl = llama_model_chat_template(e->model, nullptr);
    if (tmpl == nullptr) tmpl = "chatml";
    std::string buf(total * 2 + 256, '\0');
    int n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add_assistant, &buf[0],
                                      static_cast<int32_t>(buf.size()));
    if (n > static_cast<int>(buf.size())) {
        buf.resize(n);
        n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add_assistant, &buf[0],
                                      static_cast<int32_t>(buf.size()));
    }
    if (n < 0) {
        e->set_error("the model's chat template is not one llama_chat_apply_template supports");
        return EV_ERROR_NOT_IMPLEMENTED;
    }
    buf.resize(n);
    char* out = static_cast<char*>(malloc(buf.size() + 1));
    if (!out) {
        e->set_error("out of memory");
        return EV_ERROR_OUT_OF_MEMORY;
    }
    memcpy(out, buf.c_str(), buf.size() + 1);
    *output = out;
    return EV_SUCCESS;
}

// ---- entry points ----

EV_API ev_error_t ev_tokenize(ev_context ctx, const char* text, bool add_special, bool parse_special,
                              int32_t** tokens, int* num_tokens) {
    return ev::with_engine("ev_tokenize", EV_ERROR_INFERENCE_FAILED, ctx, ev::kLocked, [&](Engine& e) {
        return ev_tokenize_impl(&e, text, add_special, parse_special, tokens, num_tokens);
    });
}

EV_API void ev_free_tokens(int32_t* tokens) { ev_free_tokens_impl(tokens); }  // free(): cannot throw

EV_API ev_error_t ev_detokenize(ev_context ctx, const int32_t* tokens, int num_tokens, bool special,
                                char** output) {
    return ev::with_engine("ev_detokenize", EV_ERROR_INFERENCE_FAILED, ctx, ev::kLocked,
                           [&](Engine& e) { return ev_detokenize_impl(&e, tokens, num_tokens, special, output); });
}

EV_API ev_error_t ev_chat_apply_template(ev_context ctx, const ev_chat_message* messages, size_t num_messages,
                                         bool add_assistant, char** output) {
    return ev::with_engine("ev_chat_apply_template", EV_ERROR_INFERENCE_FAILED, ctx, ev::kLocked, [&](Engine& e) {
        return ev_chat_apply_template_impl(&e, messages, num_messages, add_assistant, output);
    });
}

}  // extern "C"

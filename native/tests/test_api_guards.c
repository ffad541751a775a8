/* Every public function with NULL or invalid arguments: a documented error
 * code or a no-op, never a crash. No model needed. */
#include "edge_veda.h"
#include "ev_test.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    ev_set_verbose(false);
    /* version, strings, backends */
    CHECK(strcmp(ev_version(), EV_VERSION_STRING) == 0);
    CHECK(strcmp(ev_error_string(EV_ERROR_INVALID_PARAM), "Invalid parameter") == 0);
    CHECK(strcmp(ev_error_string((ev_error_t)12345), "Unknown error") == 0);
    CHECK(strcmp(ev_backend_name(EV_BACKEND_CPU), "CPU") == 0);
    CHECK(strcmp(ev_backend_name((ev_backend_t)99), "Unknown") == 0);
    CHECK(ev_is_backend_available(EV_BACKEND_CPU));
    CHECK(ev_is_backend_available(EV_BACKEND_AUTO));
    CHECK(!ev_is_backend_available((ev_backend_t)42));
#if !defined(__APPLE__)
    CHECK(!ev_is_backend_available(EV_BACKEND_METAL));
#endif
    ev_backend_t b = ev_detect_backend();
    CHECK(b == EV_BACKEND_CPU || b == EV_BACKEND_VULKAN || b == EV_BACKEND_METAL);

    /* defaults */
    ev_config_default(NULL);
    ev_generation_params_default(NULL);
    ev_generation_extras_default(NULL);
    ev_config_extras_default(NULL);
    CHECK(ev_model_buffer_types(NULL) == NULL);
    ev_config c;
    ev_config_default(&c);
    CHECK(c.context_size == 2048 && c.batch_size == 512 && c.gpu_layers == -1 && c.seed == -1);
    CHECK(c.auto_unload_on_memory_pressure && c.use_mmap && !c.use_mlock);
    ev_generation_params p;
    ev_generation_params_default(&p);
    CHECK(p.max_tokens == 512 && p.top_k == 40 && p.temperature > 0.79f && p.temperature < 0.81f);

    /* init */
    ev_error_t err = EV_SUCCESS;
    CHECK(ev_init(NULL, &err) == NULL && err == EV_ERROR_INVALID_PARAM);
    CHECK(strstr(ev_last_error_message(), "config") != NULL);
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_INVALID_PARAM); /* NULL path */
    c.model_path = "";
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_INVALID_PARAM);
    c.model_path = "/nonexistent/model.gguf";
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_MODEL_LOAD_FAILED);
    CHECK(strstr(ev_last_error_message(), "/nonexistent/model.gguf") != NULL);
    CHECK(strstr(ev_get_last_error(NULL), "/nonexistent/model.gguf") != NULL);
    c.model_path = "/tmp";
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_MODEL_LOAD_FAILED);
    CHECK(strstr(ev_last_error_message(), "directory") != NULL);
    c.model_path = "/nonexistent/model.gguf";
    c.backend = (ev_backend_t)7;
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_INVALID_PARAM);
    c.backend = EV_BACKEND_METAL;
#if !defined(__APPLE__)
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_UNSUPPORTED_BACKEND);
#endif
    c.backend = EV_BACKEND_AUTO;
    c.context_size = -1;
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_INVALID_PARAM);
    c.context_size = 2048;
    c.batch_size = 0;
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_INVALID_PARAM);
    c.batch_size = 512;
    c.num_threads = -2;
    CHECK(ev_init(&c, &err) == NULL && err == EV_ERROR_INVALID_PARAM);
    c.num_threads = 0;
    CHECK(ev_init(&c, NULL) == NULL); /* NULL error pointer is allowed */

    /* everything with a NULL context */
    char* out = (char*)1;
    CHECK(ev_generate(NULL, "x", NULL, &out) == EV_ERROR_CONTEXT_INVALID && out == NULL);
    CHECK(ev_generate_stream(NULL, "x", NULL, &err) == NULL && err == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_stream_next(NULL, &err) == NULL && err == EV_ERROR_INVALID_PARAM);
    CHECK(!ev_stream_has_next(NULL));
    ev_stream_cancel(NULL);
    ev_stream_free(NULL);
    ev_stream_token_info ti;
    CHECK(ev_stream_get_token_info(NULL, &ti) == EV_ERROR_INVALID_PARAM);
    ev_generation_stats gs;
    CHECK(ev_stream_get_stats(NULL, &gs) == EV_ERROR_INVALID_PARAM);
    CHECK(ev_get_last_generation_stats(NULL, &gs) == EV_ERROR_CONTEXT_INVALID);
    ev_logprobs lps;
    CHECK(ev_stream_get_logprobs(NULL, &lps) == EV_ERROR_INVALID_PARAM && lps.num_tokens == 0);
    CHECK(ev_get_last_logprobs(NULL, &lps) == EV_ERROR_CONTEXT_INVALID && lps.tokens == NULL);
    ev_free_logprobs(NULL);
    ev_free_logprobs(&lps);
    ev_memory_stats ms;
    CHECK(ev_get_memory_usage(NULL, &ms) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_set_memory_limit(NULL, 1) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_set_memory_pressure_callback(NULL, NULL, NULL) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_memory_cleanup(NULL) == EV_ERROR_CONTEXT_INVALID);
    ev_model_info mi;
    CHECK(ev_get_model_info(NULL, &mi) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_reset(NULL) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_generate_cancel(NULL) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_set_prompt_cache(NULL, true) == EV_ERROR_CONTEXT_INVALID);
    ev_embed_result er;
    CHECK(ev_embed(NULL, "x", &er) == EV_ERROR_CONTEXT_INVALID);
    ev_free_embeddings(NULL);
    memset(&er, 0, sizeof er);
    ev_free_embeddings(&er);
    int32_t* toks;
    int nt;
    CHECK(ev_tokenize(NULL, "x", true, true, &toks, &nt) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_detokenize(NULL, NULL, 0, false, &out) == EV_ERROR_CONTEXT_INVALID);
    CHECK(ev_chat_apply_template(NULL, NULL, 0, true, &out) == EV_ERROR_CONTEXT_INVALID);
    CHECK(!ev_is_valid(NULL));
    CHECK(ev_get_last_error(NULL) != NULL);
    ev_free(NULL);
    ev_free_string(NULL);
    ev_free_tokens(NULL);
    CHECK(ev_llama_version() != NULL && ev_system_info() != NULL);
    return ev_test_summary("api_guards");
}

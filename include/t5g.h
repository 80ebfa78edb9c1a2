/* t5g: run T5Gemma encoder-decoder models on CPUs. C interface.
 *
 * Every function may be called from several threads on one model. Errors never abort: a
 * failing call returns NULL or -1 and, when `error` is not NULL, stores a message there that
 * the caller frees with t5g_string_free. Every string returned is freed with t5g_string_free.
 * Kept in sync with src/capi.rs by tests/capi.rs. */
#ifndef T5G_H
#define T5G_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t5g_model t5g_model;

/* Returns 0 to continue, anything else to stop. `utf8` is valid during the call only. */
typedef int32_t (*t5g_piece_callback)(const char *utf8, void *user);

/* Loads a model file (memory-mapped). NULL on failure, *error set. */
t5g_model *t5g_model_load(const char *path, char **error);

/* Frees a model; NULL is ignored. No call may use the model concurrently or afterwards. */
void t5g_model_free(t5g_model *model);

/* Greedy generation from token ids. `out_ids` must have room for `max_new_tokens` ids.
 * Returns the number of ids written, or -1. */
int32_t t5g_generate_ids(const t5g_model *model, const int32_t *input_ids, size_t n_input,
                         int32_t max_new_tokens, int32_t *out_ids, char **error);

/* Summarizes UTF-8 text (max_new_tokens <= 0: default length). Returns a string to free
 * with t5g_string_free, or NULL. */
char *t5g_summarize(const t5g_model *model, const char *text, int32_t max_new_tokens, char **error);

/* As t5g_summarize, streaming the summary to `on_piece`. Returns the number of tokens
 * generated, or -1. */
int32_t t5g_summarize_stream(const t5g_model *model, const char *text, int32_t max_new_tokens,
                             t5g_piece_callback on_piece, void *user, char **error);

/* Frees a string returned by this library; NULL is ignored. */
void t5g_string_free(char *s);

/* The library version, static. */
const char *t5g_version(void);

#ifdef __cplusplus
}
#endif

#endif /* T5G_H */

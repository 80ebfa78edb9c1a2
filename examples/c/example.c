/* t5g from C: greedy ids, four threads sharing one model, streamed summary, error paths.
 *
 *   example MODEL.gguf IDS MAX_NEW [CORRUPT.gguf] [CALLS_PER_THREAD]
 *
 * Prints the greedy ids on the first line (comma-separated, like `t5g generate --ids`), then
 * one line per check. Exits non-zero if any check fails. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t5g.h"

#define MAX_IDS 4096

static const t5g_model *g_model;
static int32_t g_input[MAX_IDS];
static size_t g_n_input;
static int32_t g_max_new;
static int32_t g_expected[MAX_IDS];
static int32_t g_expected_n;
static int g_calls = 10;

static void *worker(void *arg) {
    long *failures = arg;
    int32_t out[MAX_IDS];
    for (int i = 0; i < g_calls; i++) {
        char *err = NULL;
        int32_t n = t5g_generate_ids(g_model, g_input, g_n_input, g_max_new, out, &err);
        if (n != g_expected_n || memcmp(out, g_expected, sizeof(int32_t) * (size_t)n) != 0) {
            (*failures)++;
        }
        t5g_string_free(err);
    }
    return NULL;
}

static int32_t on_piece(const char *utf8, void *user) {
    size_t *bytes = user;
    *bytes += strlen(utf8);
    return 0;
}

/* Expects a failing call: returns 0 if it failed with a message. */
static int expect_error(const char *what, int failed, char *err) {
    int ok = failed && err != NULL && err[0] != '\0';
    printf("%s: %s (%s)\n", what, ok ? "error reported" : "NOT REPORTED", err ? err : "no message");
    t5g_string_free(err);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf IDS MAX_NEW [CORRUPT.gguf] [CALLS_PER_THREAD]\n", argv[0]);
        return 2;
    }
    int failures = 0;
    char *err = NULL;
    t5g_model *model = t5g_model_load(argv[1], &err);
    if (!model) {
        fprintf(stderr, "error: %s\n", err);
        t5g_string_free(err);
        return 1;
    }
    g_model = model;
    for (char *tok = strtok(argv[2], ","); tok && g_n_input < MAX_IDS; tok = strtok(NULL, ",")) {
        g_input[g_n_input++] = (int32_t)atoi(tok);
    }
    g_max_new = (int32_t)atoi(argv[3]);
    if (argc > 5) g_calls = atoi(argv[5]);

    g_expected_n = t5g_generate_ids(model, g_input, g_n_input, g_max_new, g_expected, &err);
    if (g_expected_n < 0) {
        fprintf(stderr, "error: %s\n", err);
        t5g_string_free(err);
        t5g_model_free(model);
        return 1;
    }
    for (int32_t i = 0; i < g_expected_n; i++) printf(i ? ",%d" : "%d", g_expected[i]);
    printf("\n");

    pthread_t threads[4];
    long thread_failures[4] = {0, 0, 0, 0};
    for (int t = 0; t < 4; t++) pthread_create(&threads[t], NULL, worker, &thread_failures[t]);
    long mismatches = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        mismatches += thread_failures[t];
    }
    printf("threads: 4 x %d calls, %ld mismatches\n", g_calls, mismatches);
    failures += mismatches != 0;

    size_t streamed = 0;
    int32_t n = t5g_summarize_stream(model, "A short document. It has two sentences.", 8, on_piece, &streamed, &err);
    if (n >= 0) {
        char *summary = t5g_summarize(model, "A short document. It has two sentences.", 8, &err);
        int same = summary && strlen(summary) <= streamed + 2;
        printf("summary: %d tokens streamed, %zu bytes; one-shot %s\n", n, streamed, same ? "agrees" : "DIFFERS");
        failures += !same;
        t5g_string_free(summary);
    } else {
        /* An ids-only model has no tokenizer: that must be an error message, not a crash. */
        failures += expect_error("summarize without tokenizer", 1, err);
    }

    /* Each failing call first, then its check: C leaves argument order unspecified. */
    int32_t out[8];
    int32_t bad_ids[2] = {5, 99999999};
    int failed = t5g_generate_ids(model, bad_ids, 2, 4, out, &err) < 0;
    failures += expect_error("bad id", failed, err);
    int32_t negative[1] = {-3};
    failed = t5g_generate_ids(model, negative, 1, 4, out, &err) < 0;
    failures += expect_error("negative id", failed, err);
    failed = t5g_generate_ids(model, bad_ids, 1, 0, out, &err) < 0;
    failures += expect_error("zero max_new_tokens", failed, err);
    failed = t5g_model_load("/nonexistent/model.gguf", &err) == NULL;
    failures += expect_error("bad path", failed, err);
    if (argc > 4) {
        failed = t5g_model_load(argv[4], &err) == NULL;
        failures += expect_error("corrupt file", failed, err);
    }
    failed = t5g_generate_ids(NULL, g_input, 1, 4, out, &err) < 0;
    failures += expect_error("NULL model", failed, err);
    printf("version: %s\n", t5g_version());

    t5g_model_free(model);
    printf("%s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}

/* buffers.c — CUPTI's activity buffers: handing them out, taking them back (only our own: see below),
 * CUPTI's dropped-record counts, and the buffer diagnostics (discard, dump for test fixtures). */
#include "gpufl_native.h"

/* CUPTI's buffer callbacks are process-wide, not per subscriber. Around a hand-over with another CUPTI
 * client (torch.profiler's Kineto registers its own callbacks; gpufl registers again when it resumes),
 * CUPTI can complete a buffer through the callback that did not allocate it. Freeing a buffer Kineto
 * allocated (memory of a std::vector it frees itself later) is a double free; reading it would record
 * another tool's activity as ours. So only buffers handed out here are read and freed; others are left
 * to their owner and counted. A handful are outstanding at a time: a locked list is enough. */
#define OWNED_BUFFERS_MAX 4096
static pthread_mutex_t g_owned_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *g_owned[OWNED_BUFFERS_MAX];
static size_t g_owned_hi; /* slots [0, hi) may be in use */

static int owned_add(uint8_t *p) {
    int ok = 0;
    pthread_mutex_lock(&g_owned_mu);
    for (size_t i = 0; i < OWNED_BUFFERS_MAX && !ok; i++) {
        if (!g_owned[i]) {
            g_owned[i] = p;
            if (i >= g_owned_hi) g_owned_hi = i + 1;
            ok = 1;
        }
    }
    pthread_mutex_unlock(&g_owned_mu);
    return ok;
}

static int owned_take(uint8_t *p) {
    int found = 0;
    pthread_mutex_lock(&g_owned_mu);
    for (size_t i = 0; i < g_owned_hi && !found; i++) {
        if (g_owned[i] == p) {
            g_owned[i] = NULL;
            found = 1;
        }
    }
    while (g_owned_hi && !g_owned[g_owned_hi - 1]) g_owned_hi--;
    pthread_mutex_unlock(&g_owned_mu);
    return found;
}

size_t owned_count(void) {
    size_t n = 0;
    pthread_mutex_lock(&g_owned_mu);
    for (size_t i = 0; i < g_owned_hi; i++) n += g_owned[i] != NULL;
    pthread_mutex_unlock(&g_owned_mu);
    return n;
}

void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    size_t n = g_opts.buffer_bytes ? g_opts.buffer_bytes : (8u << 20);
    void *p = NULL;
    if (posix_memalign(&p, 8, n)) p = NULL;
    if (p && !owned_add(p)) { /* never reached in practice (4096 × the buffer size outstanding) */
        free(p);
        p = NULL;
    }
    *buffer = p;
    *size = p ? n : 0;
    *max_records = 0;
}

/* Diagnostics (g_opts.dump_dir, g_opts.discard): returns whether the buffer is still to be processed. */
static int buffer_diagnostics(uint8_t *buf, size_t valid) {
    if (g_opts.dump_dir[0]) { /* raw buffers for the no-GPU tests (GPUFL_NATIVE_DUMP_DIR) */
        char path[4096];
        snprintf(path, sizeof path, "%s/buffer-%06llu.bin", g_opts.dump_dir,
                 (unsigned long long)atomic_fetch_add(&g_trace.dump_seq, 1));
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            ssize_t wr = write(fd, buf, valid);
            (void)wr;
            close(fd);
        }
        /* Kernel names are pointers into CUPTI's memory: keep them beside the buffer (pointer TAB name). */
        strcpy(path + strlen(path) - 4, ".names");
        FILE *nf = fopen(path, "w");
        CUpti_Activity *r = NULL;
        while (nf && p_cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
            if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
                const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)r;
                if (k->name) fprintf(nf, "%llx\t%s\n", (unsigned long long)(uintptr_t)k->name, k->name);
            }
        }
        if (nf) fclose(nf);
    }
    return !g_opts.discard;
}

void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid) {
    if (buf && !owned_take(buf)) { /* another CUPTI client's buffer: not ours to read or free */
        atomic_fetch_add_explicit(&g_trace.foreign_buffers, 1, memory_order_relaxed);
        return;
    }
    if (buf && valid && (!g_opts.buffer_diagnostics || buffer_diagnostics(buf, valid))) process_buffer(buf, valid);
    size_t dropped = 0;
    if (p_cuptiActivityGetNumDroppedRecords && p_cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS &&
        dropped) {
        atomic_fetch_add(&g_trace.cupti_dropped, dropped);
        pthread_mutex_lock(&g_writer_mu);
        if (g_trace.w) {
            pthread_mutex_lock(&g_trace.w->mu);
            for (size_t i = 0; i < dropped; i++) w_count_drop_locked(g_trace.w, DROP_CUPTI);
            pthread_mutex_unlock(&g_trace.w->mu);
        }
        pthread_mutex_unlock(&g_writer_mu);
    }
    free(buf);
}

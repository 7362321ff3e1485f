/* writer.c — one stream's writer: segments (O_EXCL, O_APPEND), rotation by size and age, `seq`, the
 * per-segment dictionary records, drop accounting, and a flush thread that hands bytes to the OS every
 * interval. Used by the Python session (through py_writer.c) and by the injection library (inject.c). */
#include "gpufl_native.h"

const char *const DK_NAMES[DK_N] = {"launch", "stack", "kernel", "scope", "thread"};
static const char *DROP_NAMES[DROP_N] = {"kernel", "memcpy", "memset", "cupti_buffer", "sync"};

static void w_set_error(Writer *w, const char *what) {
    if (!w->error) {
        w->error = errno ? errno : -1;
        snprintf(w->errmsg, sizeof w->errmsg, "%s: %s", what, strerror(errno));
    }
}

static size_t count_lines(const char *p, size_t n) {
    size_t lines = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++) lines++;
    return lines;
}

/* Once a write fails (disk full, quota, I/O error) the stream stops writing: retrying into a full disk
 * would cost the program time for nothing. What is not written is counted (`lost`) and said once. */
void w_write_pending_locked(Writer *w) {
    size_t off = 0;
    if (w->pending.n && w->fd >= 0 && !w->error) atomic_store(&w->busy_since, monotonic_ns());
    while (off < w->pending.n && w->fd >= 0 && !w->error) {
        ssize_t k = write(w->fd, w->pending.p + off, w->pending.n - off);
        if (k < 0) {
            if (errno == EINTR) continue;
            w_set_error(w, "write");
            break;
        }
        off += (size_t)k;
    }
    atomic_store(&w->busy_since, 0);
    w->bytes_written += off;
    if (off < w->pending.n) { /* a line cut by the failure counts as lost: the reader skips it */
        size_t from = off;
        while (from > 0 && w->pending.p[from - 1] != '\n') from--;
        w->lost += count_lines(w->pending.p + from, w->pending.n - from);
    }
    w->pending.n = 0;
}

static int w_open_segment_locked(Writer *w) {
    char path[4096];
    snprintf(path, sizeof path, "%s%06lld%s", w->prefix, (long long)w->index, w->suffix);
    /* O_EXCL: a segment is never rewritten; O_APPEND: a crash can only truncate the last line. */
    w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        w_set_error(w, "open segment");
        return -1;
    }
    w->seg_size = 0;
    w->opened_ns = realtime_ns();
    w->segments_written++;
    return 0;
}

void w_rotate_locked(Writer *w) {
    w_write_pending_locked(w);
    char path[4096];
    int n = snprintf(path, sizeof path, "%s%06lld%s", w->prefix, (long long)w->index, w->suffix);
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    sb_put(&w->closed, path, (size_t)n + 1);
    char sz[24];
    int m = snprintf(sz, sizeof sz, "%llu", (unsigned long long)w->seg_size);
    sb_put(&w->closed, sz, (size_t)m + 1);
    w->index++;
    w_open_segment_locked(w);
}

void w_ensure_dict_locked(Writer *w, int kind, uint64_t id) {
    DictVec *dv = &w->dicts[kind];
    if (id >= dv->n) return;
    DictEnt *e = &dv->v[id];
    if (!e->line || e->seg == w->index) return;
    size_t before = w->pending.n;
    sb_put(&w->pending, e->line, e->seq_at);
    sb_u64(&w->pending, w->seq++);
    sb_put(&w->pending, e->line + e->seq_at, e->n - e->seq_at);
    SB_LIT(&w->pending, "\n");
    e->seg = w->index;
    w_account_locked(w, before);
}

/* Store a dict line whose seq goes at seq_at. */
int w_set_dict_locked(Writer *w, int kind, uint64_t id, const char *line, size_t n, size_t seq_at) {
    DictVec *dv = &w->dicts[kind];
    if (id >= dv->cap) {
        size_t cap = dv->cap ? dv->cap : 64;
        while (cap <= id) cap *= 2;
        DictEnt *v = realloc(dv->v, cap * sizeof(DictEnt));
        if (!v) return -1;
        memset(v + dv->cap, 0, (cap - dv->cap) * sizeof(DictEnt));
        dv->v = v;
        dv->cap = cap;
    }
    DictEnt *e = &dv->v[id];
    free(e->line);
    e->line = malloc(n);
    if (!e->line) return -1;
    memcpy(e->line, line, n);
    e->n = n;
    e->seq_at = seq_at;
    e->seg = -1;
    if (id >= dv->n) dv->n = id + 1;
    return 0;
}

void w_count_drop_locked(Writer *w, int type) {
    uint64_t now = (uint64_t)realtime_ns();
    if (!w->drop_pending) w->drop_first = now;
    w->drop_last = now;
    w->drop_pending++;
    w->dropped_total++;
    w->drop_by[type]++;
}

void w_write_drop_record_locked(Writer *w) {
    if (!w->drop_pending) return;
    size_t before = w->pending.n;
    w_begin_line_locked(w, "dropped", 7);
    KEY_U64(&w->pending, ",\"count\":", w->drop_pending);
    KEY_U64(&w->pending, ",\"first_ns\":", w->drop_first);
    KEY_U64(&w->pending, ",\"last_ns\":", w->drop_last);
    SB_LIT(&w->pending, ",\"by_type\":{");
    int first = 1;
    for (int i = 0; i < DROP_N; i++) {
        if (!w->drop_by[i]) continue;
        if (!first) SB_LIT(&w->pending, ",");
        first = 0;
        sb_json_str(&w->pending, DROP_NAMES[i], strlen(DROP_NAMES[i]));
        SB_LIT(&w->pending, ":");
        sb_u64(&w->pending, w->drop_by[i]);
        w->drop_by[i] = 0;
    }
    SB_LIT(&w->pending, "}}\n");
    w->drop_pending = 0;
    w_account_locked(w, before);
}

/* The disk budget lives in Python (shared with the other streams): tell it about closed segments, with the
 * GIL and without our lock (Python emitters take our lock while holding the GIL). */
#ifdef GPUFL_INJECTION
static void w_report_closed(Writer *w) { /* no disk budget without the Python session */
    pthread_mutex_lock(&w->mu);
    w->closed.n = 0;
    pthread_mutex_unlock(&w->mu);
}
#else
static void w_report_closed(Writer *w) {
    pthread_mutex_lock(&w->mu);
    if (!w->closed.n || !w->on_segment_closed) {
        w->closed.n = 0;
        pthread_mutex_unlock(&w->mu);
        return;
    }
    sbuf list = w->closed;
    memset(&w->closed, 0, sizeof w->closed);
    pthread_mutex_unlock(&w->mu);
    PyGILState_STATE g = PyGILState_Ensure();
    size_t off = 0;
    while (off < list.n) {
        const char *path = list.p + off;
        off += strlen(path) + 1;
        const char *sz = list.p + off;
        off += strlen(sz) + 1;
        PyObject *r =
            PyObject_CallFunction((PyObject *)w->on_segment_closed, "sK", path, strtoull(sz, NULL, 10));
        if (!r) {
            PyErr_Clear();
            continue;
        }
        Py_DECREF(r);
    }
    PyGILState_Release(g);
    free(list.p);
}
#endif

/* Tell Python (the session says it once, for every stream) that this stream stopped writing. */
#ifdef GPUFL_INJECTION
static void w_report_error(Writer *w) { fprintf(stderr, "gpufl: %s: gpufl stops writing the device log\n", w->errmsg); }
#else
static void w_report_error(Writer *w) {
    if (!w->on_error) return;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *r = PyObject_CallFunction((PyObject *)w->on_error, "s", w->errmsg);
    if (!r) PyErr_Clear();
    Py_XDECREF(r);
    PyGILState_Release(g);
}
#endif

static void *w_thread_main(void *arg) {
    Writer *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        int64_t ns = dl.tv_nsec + w->interval_ns;
        dl.tv_sec += ns / 1000000000LL;
        dl.tv_nsec = ns % 1000000000LL;
        pthread_cond_timedwait(&w->cv, &w->mu, &dl);
        if (w->seg_size > 0 && realtime_ns() - w->opened_ns >= w->max_age_ns) w_rotate_locked(w);
        w_write_drop_record_locked(w);
        w_write_pending_locked(w);
        if (w->closed.n) {
            pthread_mutex_unlock(&w->mu);
            w_report_closed(w);
            pthread_mutex_lock(&w->mu);
        }
        if (w->error && !w->error_reported) {
            w->error_reported = 1;
            pthread_mutex_unlock(&w->mu);
            w_report_error(w);
            pthread_mutex_lock(&w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void w_init(Writer *w, const char *prefix, const char *suffix, const char *sid, const char *stream,
                   unsigned long long max_bytes, double max_age, double interval, unsigned long long max_pending) {
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->prefix = strdup(prefix);
    w->suffix = strdup(suffix);
    w->head = strdup("{\"type\":\"");
    sbuf env = {0};
    SB_LIT(&env, "\",\"session_id\":");
    sb_json_str(&env, sid, strlen(sid));
    SB_LIT(&env, ",\"stream\":");
    sb_json_str(&env, stream, strlen(stream));
    SB_LIT(&env, ",\"seq\":");
    w->envelope = env.p;
    w->envelope_n = env.n;
    sbuf mark = {0};
    SB_LIT(&mark, "\"stream\":");
    sb_json_str(&mark, stream, strlen(stream));
    w->stream_mark = mark.p;
    w->stream_mark_n = mark.n;
    w->fd = -1;
    w->max_bytes = max_bytes ? max_bytes : (uint64_t)-1;
    w->max_age_ns = max_age > 0 ? (int64_t)(max_age * 1e9) : INT64_MAX;
    w->interval_ns = interval > 0 ? (int64_t)(interval * 1e9) : 50000000;
    w->max_pending = max_pending ? max_pending : (64u << 20);
}

int w_start(Writer *w) {
    pthread_mutex_lock(&w->mu);
    int rc = w->fd < 0 ? w_open_segment_locked(w) : 0;
    pthread_mutex_unlock(&w->mu);
    if (rc) return -1;
    if (!w->thread_started) {
        if (pthread_create(&w->thread, NULL, w_thread_main, w)) return -1;
        w->thread_started = 1;
    }
    return 0;
}

/* Stop the flush thread, write what is left and `end` (a line without seq, may be NULL), close. */
void w_finish(Writer *w, const char *end, size_t end_n) {
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->thread_started) pthread_join(w->thread, NULL);
    w->thread_started = 0;
    w_report_closed(w);
    pthread_mutex_lock(&w->mu);
    w_write_drop_record_locked(w);
    if (end) w_append_python_line_locked(w, end, end_n);
    w_write_pending_locked(w);
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    pthread_mutex_unlock(&w->mu);
}

/* A line encoded by Python without "seq" (msgspec omits the default): insert it after "stream":"X". */
int w_append_python_line_locked(Writer *w, const char *s, size_t n) {
    const char *at = memmem(s, n, w->stream_mark, w->stream_mark_n);
    if (!at) return -1;
    size_t cut = (size_t)(at - s) + w->stream_mark_n;
    sb_put(&w->pending, s, cut);
    SB_LIT(&w->pending, ",\"seq\":");
    sb_u64(&w->pending, w->seq++);
    sb_put(&w->pending, s + cut, n - cut);
    if (!n || s[n - 1] != '\n') SB_LIT(&w->pending, "\n");
    return 0;
}

/* Free what w_init and writing allocated (the Python type's dealloc; the flush thread is stopped). */
void w_free(Writer *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    for (int k = 0; k < DK_N; k++) {
        for (size_t i = 0; i < w->dicts[k].n; i++) free(w->dicts[k].v[i].line);
        free(w->dicts[k].v);
    }
    free(w->pending.p);
    free(w->closed.p);
    free(w->prefix);
    free(w->suffix);
    free(w->head);
    free(w->envelope);
    free(w->stream_mark);
}

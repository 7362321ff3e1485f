/* gpufl.client._native — the native record path.
 *
 * Why C: receiving CUPTI activity records as Python objects cost +12-35% per step on a launch-bound training
 * loop (the decoder and the launching thread fight for the GIL; docs/benchmarks.md). Here nothing per record
 * touches Python:
 *   - the launch callback (on the user's launching thread) stores the API enter time, thread, open scope
 *     and, when asked, an interned Python call stack into a lock-free ring indexed by correlation id;
 *   - CUPTI's buffer thread parses activity records, joins them with their launch site, interns launch
 *     configurations (occupancy computed once per configuration), formats JSON lines and appends them to
 *     the device stream's writer;
 *   - the writer (a C thread) owns segments, rotation, `seq` and per-segment dictionary records, and hands
 *     bytes to the OS every flush interval, so a SIGKILL loses at most that much.
 * Python keeps the control plane: options, device properties, scopes, NVML, lifecycle, and the few records it
 * writes itself (session_start/end, notices) go through Writer.emit_line.
 *
 * libcupti is loaded at run time (dlopen), so this compiles and is unit-tested without a GPU: the CUPTI
 * headers are only needed at build time, and recorded raw activity buffers replay through the same parser.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#ifndef GPUFL_INJECTION
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define WRITER_HEAD PyObject_HEAD
#else
/* Built a second time without Python as the CUDA injection library (CUDA_INJECTION64_PATH) for
 * `gpufl run -- ./app`: the same record path, configured from the environment by InitializeInjection. */
#define WRITER_HEAD
#endif

#if !defined(GPUFL_INJECTION) && PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define GPUFL_FRAMES 1
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include <internal/pycore_frame.h>
#else
#define GPUFL_FRAMES 0
#endif

#include <cupti.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cbids.h"
#include "generated_nvtx_meta.h" /* parameter structs of the NVTX callbacks (CUPTI ships it) */

/* ------------------------------------------------------------------------------------------------ utils */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_reserve(sbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline void sb_put(sbuf *b, const char *s, size_t n) {
    if (sb_reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
#define SB_LIT(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

static inline void sb_u64(sbuf *b, uint64_t v) {
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_put(b, tmp + i, (size_t)(24 - i));
}

static inline void sb_i64(sbuf *b, int64_t v) {
    if (v < 0) {
        SB_LIT(b, "-");
        sb_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        sb_u64(b, (uint64_t)v);
    }
}

static void sb_f(sbuf *b, double v, int decimals) {
    char tmp[64];
    int n = snprintf(tmp, sizeof tmp, "%.*f", decimals, v);
    /* shortest form: drop trailing zeros, keep one digit after the point */
    while (n > 2 && tmp[n - 1] == '0' && tmp[n - 2] != '.') n--;
    sb_put(b, tmp, (size_t)n);
}

static void sb_json_str(sbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    SB_LIT(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_put(b, e, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    SB_LIT(b, "\"");
}

static inline void sb_key_u64(sbuf *b, const char *key, size_t klen, uint64_t v) {
    sb_put(b, key, klen);
    sb_u64(b, v);
}
#define KEY_U64(b, lit, v) sb_key_u64((b), (lit), sizeof(lit) - 1, (uint64_t)(v))
#define KEY_I64(b, lit, v)                \
    do {                                  \
        sb_put((b), (lit), sizeof(lit) - 1); \
        sb_i64((b), (int64_t)(v));        \
    } while (0)

static int64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t hash64(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static uint64_t hash_str(uint64_t h, const char *s) {
    while (*s) h = (h ^ (unsigned char)*s++) * 0x100000001b3ULL;
    return h;
}

static __thread uint32_t tls_tid;
static inline uint32_t thread_id(void) {
    if (!tls_tid) tls_tid = (uint32_t)syscall(SYS_gettid);
    return tls_tid;
}

/* ------------------------------------------------------------------------------------------------ writer */

enum { DK_LAUNCH, DK_STACK, DK_KERNEL, DK_SCOPE, DK_THREAD, DK_N };
static const char *DK_NAMES[DK_N] = {"launch", "stack", "kernel", "scope", "thread"};

typedef struct {
    char *line; /* the whole dict line, with "seq": at seq_at */
    size_t n, seq_at;
    int64_t seg; /* the segment index it was last written into, -1: never */
} DictEnt;

typedef struct {
    DictEnt *v;
    size_t n, cap;
} DictVec;

enum { DROP_KERNEL, DROP_MEMCPY, DROP_MEMSET, DROP_CUPTI, DROP_N };
static const char *DROP_NAMES[DROP_N] = {"kernel", "memcpy", "memset", "cupti_buffer"};

typedef struct {
    WRITER_HEAD
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *prefix, *suffix;   /* segment path = prefix + %06d + suffix */
    char *head;              /* {"type":" */
    char *envelope;          /* ","session_id":"S","stream":"X","seq": */
    size_t envelope_n;
    char *stream_mark;       /* "stream":"X" (where Python-encoded lines get their seq) */
    size_t stream_mark_n;
    int fd;
    int64_t index;
    uint64_t seg_size;
    int64_t opened_ns;
    uint64_t max_bytes;
    int64_t max_age_ns;
    int64_t interval_ns;
    size_t max_pending;
    sbuf pending;
    uint64_t seq;
    DictVec dicts[DK_N];
    uint64_t drop_pending, drop_first, drop_last, dropped_total, drop_by[DROP_N];
    sbuf closed; /* "path\0size\0" pairs waiting for the disk-budget callback */
    void *on_segment_closed; /* a Python callable (not in the injection build) */
    pthread_t thread;
    int thread_started, stopping;
    int error;
    char errmsg[200];
    uint64_t segments_written, bytes_written;
    uint64_t lost;       /* lines not written because writing failed (disk full, I/O error) */
    _Atomic int64_t busy_since; /* CLOCK_MONOTONIC ns when the current write() began, 0 when idle (watchdog) */
    int error_reported;  /* on_error was called (once) */
    void *on_error;      /* a Python callable (not in the injection build) */
} Writer;

#ifndef GPUFL_INJECTION
static PyTypeObject WriterType;
#endif

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
static int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void w_write_pending_locked(Writer *w) {
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

static void w_rotate_locked(Writer *w) {
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

/* Before each record: rotate on size (age is checked by the flush thread). */
static inline void w_before_record_locked(Writer *w) {
    if (w->seg_size >= w->max_bytes && w->seg_size > 0) w_rotate_locked(w);
}

static inline void w_account_locked(Writer *w, size_t before) { w->seg_size += w->pending.n - before; }

static void w_ensure_dict_locked(Writer *w, int kind, uint64_t id) {
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
static int w_set_dict_locked(Writer *w, int kind, uint64_t id, const char *line, size_t n, size_t seq_at) {
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

/* Start a record line: {"type":"<tag>","session_id":"S","stream":"X","seq":N */
static inline void w_begin_line_locked(Writer *w, const char *tag, size_t tagn) {
    sb_put(&w->pending, w->head, strlen(w->head));
    sb_put(&w->pending, tag, tagn);
    sb_put(&w->pending, w->envelope, w->envelope_n);
    sb_u64(&w->pending, w->seq++);
}

static void w_count_drop_locked(Writer *w, int type) {
    uint64_t now = (uint64_t)realtime_ns();
    if (!w->drop_pending) w->drop_first = now;
    w->drop_last = now;
    w->drop_pending++;
    w->dropped_total++;
    w->drop_by[type]++;
}

static void w_write_drop_record_locked(Writer *w) {
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

static void w_init(Writer *w, const char *prefix, const char *suffix, const char *sid, const char *stream,
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

static int w_start(Writer *w) {
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
static int w_append_python_line_locked(Writer *w, const char *s, size_t n);
static void w_finish(Writer *w, const char *end, size_t end_n) {
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

#ifndef GPUFL_INJECTION
static PyObject *Writer_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"prefix", "suffix", "session_id", "stream", "segment_max_bytes",
                             "segment_max_age_s", "flush_interval_s", "max_pending_bytes",
                             "on_segment_closed", "on_error", NULL};
    const char *prefix, *suffix, *sid, *stream;
    unsigned long long max_bytes, max_pending;
    double max_age, interval;
    PyObject *cb = Py_None, *on_error = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ssssKddK|OO", kwlist, &prefix, &suffix, &sid, &stream,
                                     &max_bytes, &max_age, &interval, &max_pending, &cb, &on_error))
        return NULL;
    Writer *w = (Writer *)type->tp_alloc(type, 0);
    if (!w) return NULL;
    w_init(w, prefix, suffix, sid, stream, max_bytes, max_age, interval, max_pending);
    if (cb != Py_None) {
        Py_INCREF(cb);
        w->on_segment_closed = cb;
    }
    if (on_error != Py_None) {
        Py_INCREF(on_error);
        w->on_error = on_error;
    }
    return (PyObject *)w;
}

static PyObject *Writer_start(Writer *w, PyObject *unused) {
    if (w_start(w)) return PyErr_Format(PyExc_OSError, "gpufl: %s", w->errmsg[0] ? w->errmsg : "cannot start");
    Py_RETURN_NONE;
}
#endif

/* A line encoded by Python without "seq" (msgspec omits the default): insert it after "stream":"X". */
static int w_append_python_line_locked(Writer *w, const char *s, size_t n) {
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

#ifndef GPUFL_INJECTION
/* emit_line(line: bytes, refs: tuple[(kind, id), ...] = ()) -> seq given */
static PyObject *Writer_emit_line(Writer *w, PyObject *args) {
    Py_buffer line;
    PyObject *refs = NULL;
    if (!PyArg_ParseTuple(args, "y*|O", &line, &refs)) return NULL;
    uint64_t seq;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&w->mu);
    Py_END_ALLOW_THREADS w_before_record_locked(w);
    size_t before = w->pending.n;
    if (refs && PyTuple_Check(refs)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(refs); i++) {
            PyObject *r = PyTuple_GET_ITEM(refs, i);
            int kind;
            unsigned long long id;
            if (PyArg_ParseTuple(r, "iK", &kind, &id) && kind >= 0 && kind < DK_N)
                w_ensure_dict_locked(w, kind, id);
            else
                PyErr_Clear();
        }
    }
    seq = w->seq;
    if (w_append_python_line_locked(w, line.buf, (size_t)line.len)) bad = 1;
    w_account_locked(w, before);
    pthread_mutex_unlock(&w->mu);
    PyBuffer_Release(&line);
    if (bad) return PyErr_Format(PyExc_ValueError, "line has no %s field", w->stream_mark);
    return PyLong_FromUnsignedLongLong(seq);
}

/* set_dict(kind, id, line): a Python-encoded dict line (no seq), written before its first use per segment. */
static PyObject *Writer_set_dict(Writer *w, PyObject *args) {
    int kind;
    unsigned long long id;
    Py_buffer line;
    if (!PyArg_ParseTuple(args, "iKy*", &kind, &id, &line)) return NULL;
    if (kind < 0 || kind >= DK_N) {
        PyBuffer_Release(&line);
        return PyErr_Format(PyExc_ValueError, "bad dict kind %d", kind);
    }
    const char *at = memmem(line.buf, (size_t)line.len, w->stream_mark, w->stream_mark_n);
    if (!at) {
        PyBuffer_Release(&line);
        return PyErr_Format(PyExc_ValueError, "dict line has no stream field");
    }
    size_t cut = (size_t)(at - (const char *)line.buf) + w->stream_mark_n;
    sbuf b = {0};
    sb_put(&b, line.buf, cut);
    SB_LIT(&b, ",\"seq\":");
    size_t seq_at = b.n;
    const char *rest = (const char *)line.buf + cut;
    size_t rn = (size_t)line.len - cut;
    while (rn && (rest[rn - 1] == '\n')) rn--;
    sb_put(&b, rest, rn);
    pthread_mutex_lock(&w->mu);
    int rc = w_set_dict_locked(w, kind, id, b.p, b.n, seq_at);
    pthread_mutex_unlock(&w->mu);
    free(b.p);
    PyBuffer_Release(&line);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Writer_flush(Writer *w, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&w->mu);
    w_write_drop_record_locked(w);
    w_write_pending_locked(w);
    pthread_mutex_unlock(&w->mu);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* close(end_line: bytes | None): write everything, then the session_end line, then close the segment. */
static PyObject *Writer_close(Writer *w, PyObject *args) {
    PyObject *end = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &end)) return NULL;
    const char *line = NULL;
    size_t n = 0;
    if (end != Py_None && PyBytes_Check(end)) {
        line = PyBytes_AS_STRING(end);
        n = (size_t)PyBytes_GET_SIZE(end);
    }
    Py_INCREF(end);
    /* the flush thread may be waiting for the GIL (disk budget callback): let it finish */
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->thread_started) pthread_join(w->thread, NULL);
    Py_END_ALLOW_THREADS w->thread_started = 0;
    w_finish(w, line, n);
    Py_DECREF(end);
    Py_RETURN_NONE;
}

/* busy_s() -> seconds the current write() has taken so far (0.0 when idle). Lock-free: the watchdog must
 * not wait on the lock a stuck write holds. */
static PyObject *Writer_busy_s(Writer *w, PyObject *unused) {
    int64_t since = atomic_load(&w->busy_since);
    return PyFloat_FromDouble(since ? (double)(monotonic_ns() - since) / 1e9 : 0.0);
}

static PyObject *Writer_stats(Writer *w, PyObject *unused) {
    pthread_mutex_lock(&w->mu);
    PyObject *d = Py_BuildValue("{sKsKsKsKsKsLsKsssK}", "seq", (unsigned long long)w->seq, "dropped",
                                (unsigned long long)w->dropped_total, "segments",
                                (unsigned long long)w->segments_written, "bytes",
                                (unsigned long long)w->bytes_written, "pending",
                                (unsigned long long)w->pending.n, "index", (long long)w->index, "error",
                                (unsigned long long)w->error, "error_message", w->errmsg, "lost",
                                (unsigned long long)w->lost);
    pthread_mutex_unlock(&w->mu);
    return d;
}

static void Writer_dealloc(Writer *w) {
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->stopping = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        Py_BEGIN_ALLOW_THREADS pthread_join(w->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    if (w->fd >= 0) close(w->fd);
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
    Py_XDECREF((PyObject *)w->on_segment_closed);
    Py_XDECREF((PyObject *)w->on_error);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyMethodDef Writer_methods[] = {
    {"start", (PyCFunction)Writer_start, METH_NOARGS, "Open the first segment and start the flush thread."},
    {"emit_line", (PyCFunction)Writer_emit_line, METH_VARARGS, "Append a Python-encoded line (seq added)."},
    {"set_dict", (PyCFunction)Writer_set_dict, METH_VARARGS, "Store a dictionary line (kind, id, line)."},
    {"flush", (PyCFunction)Writer_flush, METH_NOARGS, "Hand everything queued to the OS now."},
    {"close", (PyCFunction)Writer_close, METH_VARARGS, "Write everything, then the end line; close."},
    {"stats", (PyCFunction)Writer_stats, METH_NOARGS, "Counters."},
    {"busy_s", (PyCFunction)Writer_busy_s, METH_NOARGS, "Seconds the current write() has taken (watchdog)."},
    {NULL}};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gpufl.client._native.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One stream's writer: segments, rotation, seq, per-segment dictionary records.",
    .tp_new = Writer_new,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
};
#endif /* !GPUFL_INJECTION */

/* ------------------------------------------------------------------------------------------------ CUPTI */

#define CUPTI_FN(ret, name, args) static ret(CUPTIAPI *p_##name) args;
CUPTI_FN(CUptiResult, cuptiGetVersion, (uint32_t *))
CUPTI_FN(CUptiResult, cuptiGetResultString, (CUptiResult, const char **))
CUPTI_FN(CUptiResult, cuptiGetTimestamp, (uint64_t *))
CUPTI_FN(CUptiResult, cuptiSubscribe, (CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *))
CUPTI_FN(CUptiResult, cuptiUnsubscribe, (CUpti_SubscriberHandle))
CUPTI_FN(CUptiResult, cuptiEnableCallback, (uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
                                            CUpti_CallbackId))
CUPTI_FN(CUptiResult, cuptiActivityEnable, (CUpti_ActivityKind))
CUPTI_FN(CUptiResult, cuptiActivityDisable, (CUpti_ActivityKind))
CUPTI_FN(CUptiResult, cuptiActivityRegisterCallbacks, (CUpti_BuffersCallbackRequestFunc,
                                                       CUpti_BuffersCallbackCompleteFunc))
CUPTI_FN(CUptiResult, cuptiActivityGetNextRecord, (uint8_t *, size_t, CUpti_Activity **))
CUPTI_FN(CUptiResult, cuptiActivityFlushAll, (uint32_t))
CUPTI_FN(CUptiResult, cuptiActivityFlushPeriod, (uint32_t))
CUPTI_FN(CUptiResult, cuptiActivityGetNumDroppedRecords, (CUcontext, uint32_t, size_t *))
CUPTI_FN(CUptiResult, cuptiActivitySetAttribute, (CUpti_ActivityAttribute, size_t *, void *))
CUPTI_FN(CUptiResult, cuptiFinalize, (void))

static void *g_lib;
static char *(*p_demangle)(const char *, char *, size_t *, int *);

static const char *cupti_err(CUptiResult r) {
    const char *s = NULL;
    if (p_cuptiGetResultString && p_cuptiGetResultString(r, &s) == CUPTI_SUCCESS && s) return s;
    return "CUPTI_ERROR_UNKNOWN";
}

/* Occupancy inputs of one device (cudaGetDeviceProperties), as the Python engine's DeviceLimits. */
typedef struct {
    int valid, warp_size, max_threads_per_sm, max_blocks_per_sm, max_threads_per_block, regs_per_sm,
        regs_per_block, shared_mem_per_sm, shared_mem_per_block_optin, reserved_shared_mem_per_block;
} DevLimits;
#define MAX_DEVICES 64

/* A launch site waiting for its activity record: written by the launching thread, read by the buffer
 * thread. Slot = corr & mask; `corr` is written last (release) and re-checked after reading (seqlock). */
typedef struct {
    _Atomic uint32_t corr;
    uint32_t thread;
    uint32_t stack; /* 0: none, else id + 1 */
    uint32_t pad;
    uint64_t enter;
    uint64_t dur;
    uint64_t scope;
} Site;
#define SITE_BITS 18
#define SITE_MASK ((1u << SITE_BITS) - 1)

typedef struct {
    uint64_t hash;
    char *name;
    uint32_t device, context;
    int32_t grid[3], block[3];
    uint16_t regs;
    int32_t ssmem, dsmem;
    uint32_t local;
    uint32_t id;
} LaunchKey;

static struct {
    int loaded, active, subscribed;
    uint32_t version;
    CUpti_SubscriberHandle sub;
    Writer *w;
    int64_t offset_ns;
    size_t buf_bytes;
    int stacks;
    DevLimits lim[MAX_DEVICES];
    Site *sites;
    /* launch configurations (buffer thread, under the writer's lock) */
    LaunchKey *launches;
    size_t nlaunch_slots, nlaunch;
    char *dump_dir;
    CUpti_ActivityKind kernel_kind; /* CONCURRENT_KERNEL; KERNEL only as a diagnostic (it serialises kernels) */
    int copies;                     /* memcpy + memset activity on (diagnostics can leave them off) */
    int discard;                    /* diagnostics: free CUPTI's buffers unread */
    _Atomic uint64_t buffers, kernels, memcpys, memsets, matched, unmatched, launches_cb, cupti_dropped,
        dump_seq, foreign_buffers, untimed;
} T;

/* ------------------------------------------------------------------------------------------------ scopes */

#define MAX_SCOPE_DEPTH 256
static __thread uint64_t tls_scopes[MAX_SCOPE_DEPTH];
static __thread int tls_scope_depth;
static pthread_mutex_t g_scope_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *g_open;
static size_t g_nopen, g_capopen;
static _Atomic uint64_t g_last_open; /* the most recently entered scope still open anywhere */

static inline uint64_t current_scope(void) {
    if (tls_scope_depth > 0) return tls_scopes[tls_scope_depth - 1];
    return atomic_load_explicit(&g_last_open, memory_order_relaxed);
}

static void scope_push(uint64_t inst) {
    if (tls_scope_depth < MAX_SCOPE_DEPTH) tls_scopes[tls_scope_depth] = inst;
    tls_scope_depth++;
    pthread_mutex_lock(&g_scope_mu);
    if (g_nopen == g_capopen) {
        size_t cap = g_capopen ? g_capopen * 2 : 64;
        uint64_t *p = realloc(g_open, cap * sizeof *p);
        if (p) {
            g_open = p;
            g_capopen = cap;
        }
    }
    if (g_nopen < g_capopen) g_open[g_nopen++] = inst;
    atomic_store(&g_last_open, inst);
    pthread_mutex_unlock(&g_scope_mu);
}

static void scope_pop(uint64_t inst) {
    /* pop this thread's innermost entry with that id (scopes exit in order on a thread) */
    for (int i = (tls_scope_depth < MAX_SCOPE_DEPTH ? tls_scope_depth : MAX_SCOPE_DEPTH) - 1; i >= 0; i--) {
        if (tls_scopes[i] == inst) {
            tls_scope_depth = i;
            break;
        }
    }
    pthread_mutex_lock(&g_scope_mu);
    for (size_t i = g_nopen; i-- > 0;) {
        if (g_open[i] == inst) {
            memmove(g_open + i, g_open + i + 1, (g_nopen - i - 1) * sizeof *g_open);
            g_nopen--;
            break;
        }
    }
    atomic_store(&g_last_open, g_nopen ? g_open[g_nopen - 1] : 0);
    pthread_mutex_unlock(&g_scope_mu);
}

#ifndef GPUFL_INJECTION
static PyObject *py_scope_enter(PyObject *self, PyObject *arg) {
    uint64_t inst = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    scope_push(inst);
    Py_RETURN_NONE;
}

static PyObject *py_scope_exit(PyObject *self, PyObject *arg) {
    uint64_t inst = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    scope_pop(inst);
    Py_RETURN_NONE;
}
#endif

/* ------------------------------------------------------------------------------------------------ NVTX */
/* NVTX push/pop ranges become scopes (NVTX_INJECTION64_PATH names libcupti, so CUPTI sees NVTX calls): on the
 * calling thread they join the scope stack (kernels launched inside carry them); the begin/end events queue
 * here and the Python engine writes them to the scope stream. Instance ids start at 2^40, apart from
 * gpufl.scope's.
 * Start/end ranges (nvtxRangeStart*, nvtxRangeEnd) belong to no thread — they may end on another one — so
 * they become scopes under the starting thread's current scope but join no thread's stack (kernels are not
 * attributed to them). Their instance id is 3·2^40 + the range id NVTX returned, so the end, which only
 * has that id, finds it without a table. */
#define NVTX_START_BASE (3ULL << 40)
typedef struct {
    uint8_t kind; /* 0 begin, 1 end, 2 thread name */
    uint32_t tid;
    uint64_t inst, parent;
    int64_t ts;
    char name[192];
} NvtxEvent;
#define NVTX_MAX_QUEUED 200000 /* ~45 MB; drained every 0.1 s */
static pthread_mutex_t g_nvtx_mu = PTHREAD_MUTEX_INITIALIZER;
static NvtxEvent *g_nvtx;
static size_t g_nnvtx, g_capnvtx;
static uint64_t g_nvtx_dropped;
static _Atomic uint64_t g_nvtx_next = 1ULL << 40;
static __thread uint64_t tls_nvtx[MAX_SCOPE_DEPTH];
static __thread int tls_nvtx_depth;

/* A start/end range's instance id, from the range id NVTX gave it. */
static uint64_t nvtx_start_inst(uint64_t range_id) { return NVTX_START_BASE + (range_id & ((1ULL << 40) - 1)); }

/* The message of NVTX event attributes, NULL unless ASCII. */
static const char *nvtx_message(const nvtxEventAttributes_t *a) {
    return a && a->messageType == NVTX_MESSAGE_TYPE_ASCII ? a->message.ascii : NULL;
}

static uint64_t current_thread_scope(void) {
    return tls_scope_depth > 0 && tls_scope_depth <= MAX_SCOPE_DEPTH ? tls_scopes[tls_scope_depth - 1] : 0;
}

static void nvtx_queue(uint8_t kind, uint64_t inst, uint64_t parent, const char *name, uint32_t tid) {
    pthread_mutex_lock(&g_nvtx_mu);
    if (g_nnvtx == g_capnvtx && g_capnvtx < NVTX_MAX_QUEUED) {
        size_t cap = g_capnvtx ? g_capnvtx * 2 : 1024;
        NvtxEvent *p = realloc(g_nvtx, cap * sizeof *p);
        if (p) {
            g_nvtx = p;
            g_capnvtx = cap;
        }
    }
    if (g_nnvtx < g_capnvtx) {
        NvtxEvent *e = &g_nvtx[g_nnvtx++];
        e->kind = kind;
        e->tid = tid;
        e->inst = inst;
        e->parent = parent;
        e->ts = realtime_ns();
        snprintf(e->name, sizeof e->name, "%s", name ? name : "");
    } else {
        g_nvtx_dropped++;
    }
    pthread_mutex_unlock(&g_nvtx_mu);
}

static void on_nvtx(CUpti_CallbackId cbid, const CUpti_NvtxData *d) {
    const char *name = NULL;
    switch (cbid) {
        case CUPTI_CBID_NVTX_nvtxRangePushA:
            name = ((const nvtxRangePushA_params *)d->functionParams)->message;
            break;
        case CUPTI_CBID_NVTX_nvtxRangePushEx:
        case CUPTI_CBID_NVTX_nvtxDomainRangePushEx: {
            name = nvtx_message(cbid == CUPTI_CBID_NVTX_nvtxRangePushEx
                                    ? ((const nvtxRangePushEx_params *)d->functionParams)->eventAttrib
                                    : ((const nvtxDomainRangePushEx_params *)d->functionParams)->core.eventAttrib);
            break;
        }
        case CUPTI_CBID_NVTX_nvtxRangePop:
        case CUPTI_CBID_NVTX_nvtxDomainRangePop: {
            if (tls_nvtx_depth <= 0) return;
            uint64_t inst = tls_nvtx_depth <= MAX_SCOPE_DEPTH ? tls_nvtx[tls_nvtx_depth - 1] : 0;
            tls_nvtx_depth--;
            if (!inst) return;
            scope_pop(inst);
            nvtx_queue(1, inst, 0, NULL, thread_id());
            return;
        }
        case CUPTI_CBID_NVTX_nvtxRangeStartA:
        case CUPTI_CBID_NVTX_nvtxRangeStartEx:
        case CUPTI_CBID_NVTX_nvtxDomainRangeStartEx: {
            if (!d->functionReturnValue) return;
            uint64_t id = *(const nvtxRangeId_t *)d->functionReturnValue;
            if (cbid == CUPTI_CBID_NVTX_nvtxRangeStartA)
                name = ((const nvtxRangeStartA_params *)d->functionParams)->message;
            else
                name = nvtx_message(cbid == CUPTI_CBID_NVTX_nvtxRangeStartEx
                                        ? ((const nvtxRangeStartEx_params *)d->functionParams)->eventAttrib
                                        : ((const nvtxDomainRangeStartEx_params *)d->functionParams)->core.eventAttrib);
            nvtx_queue(0, nvtx_start_inst(id), current_thread_scope(), name ? name : "(nvtx range)", thread_id());
            return;
        }
        case CUPTI_CBID_NVTX_nvtxRangeEnd:
        case CUPTI_CBID_NVTX_nvtxDomainRangeEnd: {
            uint64_t id = cbid == CUPTI_CBID_NVTX_nvtxRangeEnd ? ((const nvtxRangeEnd_params *)d->functionParams)->id
                                                               : ((const nvtxDomainRangeEnd_params *)d->functionParams)->core.id;
            nvtx_queue(1, nvtx_start_inst(id), 0, NULL, thread_id());
            return;
        }
        case CUPTI_CBID_NVTX_nvtxNameOsThreadA: {
            const nvtxNameOsThreadA_params *p = (const nvtxNameOsThreadA_params *)d->functionParams;
            nvtx_queue(2, 0, 0, p->name, p->threadId);
            return;
        }
        default:
            return;
    }
    uint64_t parent = current_thread_scope();
    uint64_t inst = atomic_fetch_add(&g_nvtx_next, 1);
    if (tls_nvtx_depth < MAX_SCOPE_DEPTH) tls_nvtx[tls_nvtx_depth] = inst;
    tls_nvtx_depth++;
    scope_push(inst);
    nvtx_queue(0, inst, parent, name ? name : "(nvtx range)", thread_id());
}

/* ------------------------------------------------------------------------------------------------ stacks */

#define MAX_FRAMES 64
typedef struct {
    const void *code;
    int32_t lasti;
} FrameKey;

typedef struct {
    uint64_t hash;
    uint32_t n, id;
    FrameKey *frames;
} StackEnt;

static pthread_mutex_t g_stack_mu = PTHREAD_MUTEX_INITIALIZER;
static StackEnt *g_stacks;
static size_t g_stack_slots, g_nstacks;
static sbuf g_new_stacks; /* "id\0json body\0" waiting to become dict records (moved by the buffer thread) */

#if GPUFL_FRAMES
#if PY_VERSION_HEX >= 0x030D0000
#define FRAME_CODE(f) ((PyCodeObject *)(f)->f_executable)
#define TS_FRAME(ts) ((ts)->current_frame)
#else
#define FRAME_CODE(f) ((f)->f_code)
#define TS_FRAME(ts) ((ts)->cframe ? (ts)->cframe->current_frame : NULL)
#endif

/* The launching thread's Python frames, innermost first, read without the GIL: this thread is inside a CUDA
 * call, so its own frames cannot change under us, and nothing here allocates or touches refcounts. */
static int walk_frames(FrameKey *out) {
    PyThreadState *ts = PyGILState_GetThisThreadState();
    if (!ts) return 0;
    _PyInterpreterFrame *f = TS_FRAME(ts);
    int n = 0;
    int guard = 0;
    while (f && n < MAX_FRAMES && guard++ < 4096) {
#if PY_VERSION_HEX >= 0x030C0000
        int skip = f->owner == FRAME_OWNED_BY_CSTACK;
#else
        int skip = 0;
#endif
        PyCodeObject *code = skip ? NULL : FRAME_CODE(f);
        if (code && PyCode_Check(code) && !_PyFrame_IsIncomplete(f)) {
            out[n].code = code;
            out[n].lasti = _PyInterpreterFrame_LASTI(f);
            n++;
        }
        f = f->previous;
    }
    return n;
}

/* A str's UTF-8, JSON-escaped, read straight from the object (no allocation, no GIL needed). */
static void sb_json_pystr(sbuf *b, PyObject *s) {
    if (!s || !PyUnicode_Check(s)) {
        SB_LIT(b, "\"?\"");
        return;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    sbuf tmp = {0};
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        char u[4];
        size_t k;
        if (c < 0x80) {
            u[0] = (char)c;
            k = 1;
        } else if (c < 0x800) {
            u[0] = (char)(0xC0 | (c >> 6));
            u[1] = (char)(0x80 | (c & 0x3F));
            k = 2;
        } else if (c < 0x10000) {
            u[0] = (char)(0xE0 | (c >> 12));
            u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
            u[2] = (char)(0x80 | (c & 0x3F));
            k = 3;
        } else {
            u[0] = (char)(0xF0 | (c >> 18));
            u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
            u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
            u[3] = (char)(0x80 | (c & 0x3F));
            k = 4;
        }
        sb_put(&tmp, u, k);
    }
    sb_json_str(b, tmp.p ? tmp.p : "", tmp.n);
    free(tmp.p);
}

static void stack_json(sbuf *b, const FrameKey *fr, int n) {
    SB_LIT(b, ",\"frames\":[");
    for (int i = 0; i < n; i++) {
        PyCodeObject *code = (PyCodeObject *)fr[i].code;
        if (i) SB_LIT(b, ",");
        SB_LIT(b, "[");
        sb_json_pystr(b, code->co_filename);
        SB_LIT(b, ",");
        sb_i64(b, PyCode_Addr2Line(code, fr[i].lasti * (int)sizeof(_Py_CODEUNIT)));
        SB_LIT(b, ",");
        sb_json_pystr(b, code->co_name);
        SB_LIT(b, "]");
    }
    SB_LIT(b, "]");
}

/* Stack id + 1 of the launching thread's current Python stack (0: none). */
static uint32_t capture_stack(void) {
    FrameKey fr[MAX_FRAMES];
    int n = walk_frames(fr);
    if (n == 0) return 0;
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) h = hash64(hash64(h, (uint64_t)(uintptr_t)fr[i].code), (uint64_t)fr[i].lasti);
    uint32_t id = 0;
    pthread_mutex_lock(&g_stack_mu);
    if (g_nstacks * 2 >= g_stack_slots) {
        size_t slots = g_stack_slots ? g_stack_slots * 2 : 1024;
        StackEnt *t = calloc(slots, sizeof *t);
        if (!t) goto out;
        for (size_t i = 0; i < g_stack_slots; i++) {
            if (!g_stacks[i].frames) continue;
            size_t j = g_stacks[i].hash & (slots - 1);
            while (t[j].frames) j = (j + 1) & (slots - 1);
            t[j] = g_stacks[i];
        }
        free(g_stacks);
        g_stacks = t;
        g_stack_slots = slots;
    }
    size_t j = h & (g_stack_slots - 1);
    while (g_stacks[j].frames) {
        StackEnt *e = &g_stacks[j];
        if (e->hash == h && e->n == (uint32_t)n && !memcmp(e->frames, fr, (size_t)n * sizeof *fr)) {
            id = e->id + 1;
            goto out;
        }
        j = (j + 1) & (g_stack_slots - 1);
    }
    {
        FrameKey *copy = malloc((size_t)n * sizeof *fr);
        if (!copy) goto out;
        memcpy(copy, fr, (size_t)n * sizeof *fr);
        StackEnt *e = &g_stacks[j];
        e->hash = h;
        e->n = (uint32_t)n;
        e->id = (uint32_t)g_nstacks++;
        e->frames = copy;
        char idbuf[16];
        int k = snprintf(idbuf, sizeof idbuf, "%u", e->id);
        sb_put(&g_new_stacks, idbuf, (size_t)k + 1);
        sbuf body = {0};
        stack_json(&body, fr, n);
        sb_put(&g_new_stacks, body.p, body.n);
        sb_put(&g_new_stacks, "", 1);
        free(body.p);
        id = e->id + 1;
    }
out:
    pthread_mutex_unlock(&g_stack_mu);
    return id;
}
#else
static uint32_t capture_stack(void) { return 0; }
#endif

/* Move stacks first seen by launching threads into the writer's dictionary (buffer thread, writer locked). */
static void sync_stacks_locked(Writer *w) {
    pthread_mutex_lock(&g_stack_mu);
    sbuf list = g_new_stacks;
    memset(&g_new_stacks, 0, sizeof g_new_stacks);
    pthread_mutex_unlock(&g_stack_mu);
    size_t off = 0;
    sbuf line = {0};
    while (off < list.n) {
        uint64_t id = strtoull(list.p + off, NULL, 10);
        off += strlen(list.p + off) + 1;
        const char *body = list.p + off;
        size_t bn = strlen(body);
        off += bn + 1;
        line.n = 0;
        sb_put(&line, w->head, strlen(w->head));
        SB_LIT(&line, "dict");
        sb_put(&line, w->envelope, w->envelope_n);
        size_t seq_at = line.n;
        SB_LIT(&line, ",\"kind\":\"stack\",\"id\":");
        sb_u64(&line, id);
        sb_put(&line, body, bn);
        SB_LIT(&line, "}");
        w_set_dict_locked(w, DK_STACK, id, line.p, line.n, seq_at);
    }
    free(line.p);
    free(list.p);
}

/* ------------------------------------------------------------------------------------------------ launch callback */

static __thread int tls_runtime_depth;
static int g_empty_callback; /* diagnostics: measure CUPTI's own callback cost (configure(..., empty=True)) */
#ifdef GPUFL_INJECTION
static void query_device_limits(void);
#endif

static void CUPTIAPI on_api(void *ud, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *cbdata) {
    if (domain == CUPTI_CB_DOMAIN_NVTX) {
        on_nvtx(cbid, (const CUpti_NvtxData *)cbdata);
        return;
    }
    if (g_empty_callback) return;
    const CUpti_CallbackData *d = (const CUpti_CallbackData *)cbdata;
    int enter = d->callbackSite == CUPTI_API_ENTER;
    if (domain == CUPTI_CB_DOMAIN_RUNTIME_API) {
        if (!enter) tls_runtime_depth--;
    } else if (tls_runtime_depth > 0) {
        return; /* a driver call made by a runtime call we already saw: its kernel carries the runtime id */
    }
    uint32_t corr = d->correlationId;
    Site *s = &T.sites[corr & SITE_MASK];
#ifdef GPUFL_INJECTION
    static _Atomic int limits_done;
    if (enter && !atomic_exchange(&limits_done, 1)) query_device_limits(); /* CUDA is up by the first launch */
#endif
    if (enter) {
        if (domain == CUPTI_CB_DOMAIN_RUNTIME_API) tls_runtime_depth++;
        /* CLOCK_REALTIME (a vDSO read, no call into libcupti) on the user's thread; the kernel's GPU time is
         * mapped onto the same clock with the measured offset. */
        uint64_t now = (uint64_t)realtime_ns();
        atomic_store_explicit(&s->corr, 0, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        s->thread = thread_id();
        s->scope = current_scope();
        s->stack = T.stacks ? capture_stack() : 0;
        s->enter = now;
        s->dur = 0;
        atomic_store_explicit(&s->corr, corr, memory_order_release);
        if (d->correlationData) *d->correlationData = now;
        atomic_fetch_add_explicit(&T.launches_cb, 1, memory_order_relaxed);
    } else if (atomic_load_explicit(&s->corr, memory_order_acquire) == corr) {
        s->dur = (uint64_t)realtime_ns() - s->enter;
    }
}

/* ------------------------------------------------------------------------------------------------ records */

static const char *COPY_KINDS[] = {"unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA",
                                   "AtoD",    "DtoA", "DtoD", "HtoH", "PtoP"};
static const char *MEM_KINDS[] = {"unknown", "Pageable", "Pinned",       "Device",
                                  "Array",   "Managed",  "DeviceStatic", "ManagedStatic"};
#define ENUM_NAME(tab, v) ((unsigned)(v) < sizeof(tab) / sizeof(*(tab)) ? (tab)[(v)] : "unknown")

typedef struct {
    int ok;
    uint32_t thread, stack;
    uint64_t enter, dur, scope;
} SiteCopy;

static SiteCopy site_of(uint32_t corr) {
    SiteCopy c = {0};
    Site *s = &T.sites[corr & SITE_MASK];
    if (atomic_load_explicit(&s->corr, memory_order_acquire) != corr) return c;
    c.thread = s->thread;
    c.stack = s->stack;
    c.enter = s->enter;
    c.dur = s->dur;
    c.scope = s->scope;
    atomic_thread_fence(memory_order_acquire);
    c.ok = atomic_load_explicit(&s->corr, memory_order_relaxed) == corr;
    return c;
}

static void put_site_fields(sbuf *b, const SiteCopy *s, uint64_t start, int api) {
    if (!s->ok) return;
    if (api && s->enter) {
        KEY_I64(b, ",\"api_lead_ns\":", (int64_t)start + T.offset_ns - (int64_t)s->enter);
        if (s->dur) KEY_U64(b, ",\"api_dur_ns\":", s->dur);
    }
    if (s->thread) KEY_U64(b, ",\"thread_id\":", s->thread);
    if (s->stack) KEY_U64(b, ",\"stack_id\":", s->stack - 1);
    if (s->scope) KEY_U64(b, ",\"scope_inst\":", s->scope);
}

/* Theoretical occupancy, as gpufl/client/engines/occupancy.py (the CUDA occupancy calculator). */
typedef struct {
    double occ, reg, smem, warp, block;
    int max_blocks;
    const char *limiter;
} Occ;

static int ceil_to(int x, int unit) { return ((x + unit - 1) / unit) * unit; }

static Occ occupancy(const DevLimits *dev, int threads, int regs, int smem) {
    const int big = 1 << 30;
    int ws = dev->warp_size > 0 ? dev->warp_size : 32;
    int max_warps = dev->max_threads_per_sm / ws;
    int wpb = (threads + ws - 1) / ws;
    if (wpb < 1) wpb = 1;
    int by_warps = threads <= dev->max_threads_per_block ? max_warps / wpb : 0;
    int by_blocks = dev->max_blocks_per_sm;
    int by_regs;
    if (regs <= 0)
        by_regs = big;
    else if (regs > 255)
        by_regs = 0;
    else {
        int rpw = ceil_to(regs * ws, 256);
        if (rpw * wpb > dev->regs_per_block)
            by_regs = 0;
        else
            by_regs = (((dev->regs_per_sm / 4) / rpw) * 4) / wpb;
    }
    int by_smem;
    if (smem > dev->shared_mem_per_block_optin)
        by_smem = 0;
    else {
        int need = ceil_to(smem + dev->reserved_shared_mem_per_block, 128);
        by_smem = need > 0 ? dev->shared_mem_per_sm / need : big;
    }
    int vals[4] = {by_regs, by_smem, by_warps, by_blocks};
    const char *names[4] = {"registers", "shared_memory", "warps", "blocks"};
    int blocks = vals[0];
    for (int i = 1; i < 4; i++)
        if (vals[i] < blocks) blocks = vals[i];
    const char *lim = "blocks";
    for (int i = 0; i < 4; i++)
        if (vals[i] == blocks) {
            lim = names[i];
            break;
        }
#define OCC(bv) ((bv) < big ? (double)(bv) * wpb / max_warps : 1.0)
#define CAP1(x) ((x) > 1.0 ? 1.0 : (x))
    Occ o = {OCC(blocks), CAP1(OCC(by_regs)), CAP1(OCC(by_smem)), CAP1(OCC(by_warps)), CAP1(OCC(by_blocks)),
             blocks, lim};
    return o;
}

static uint32_t launch_id_locked(Writer *w, const CUpti_ActivityKernel10 *k) {
    const char *name = k->name ? k->name : "";
    uint64_t h = hash_str(1469598103934665603ULL, name);
    h = hash64(h, k->deviceId);
    h = hash64(h, k->contextId);
    h = hash64(h, ((uint64_t)(uint32_t)k->gridX << 32) ^ (uint32_t)k->gridY);
    h = hash64(h, ((uint64_t)(uint32_t)k->gridZ << 32) ^ (uint32_t)k->blockX);
    h = hash64(h, ((uint64_t)(uint32_t)k->blockY << 32) ^ (uint32_t)k->blockZ);
    h = hash64(h, ((uint64_t)k->registersPerThread << 48) ^ ((uint64_t)(uint32_t)k->staticSharedMemory << 16));
    h = hash64(h, ((uint64_t)(uint32_t)k->dynamicSharedMemory << 32) ^ k->localMemoryPerThread);
    if (T.nlaunch * 2 >= T.nlaunch_slots) {
        size_t slots = T.nlaunch_slots ? T.nlaunch_slots * 2 : 1024;
        LaunchKey *t = calloc(slots, sizeof *t);
        if (!t) return UINT32_MAX;
        for (size_t i = 0; i < T.nlaunch_slots; i++) {
            if (!T.launches[i].name) continue;
            size_t j = T.launches[i].hash & (slots - 1);
            while (t[j].name) j = (j + 1) & (slots - 1);
            t[j] = T.launches[i];
        }
        free(T.launches);
        T.launches = t;
        T.nlaunch_slots = slots;
    }
    size_t j = h & (T.nlaunch_slots - 1);
    while (T.launches[j].name) {
        LaunchKey *e = &T.launches[j];
        if (e->hash == h && e->device == k->deviceId && e->context == k->contextId && e->grid[0] == k->gridX &&
            e->grid[1] == k->gridY && e->grid[2] == k->gridZ && e->block[0] == k->blockX &&
            e->block[1] == k->blockY && e->block[2] == k->blockZ && e->regs == k->registersPerThread &&
            e->ssmem == k->staticSharedMemory && e->dsmem == k->dynamicSharedMemory &&
            e->local == k->localMemoryPerThread && !strcmp(e->name, name))
            return e->id;
        j = (j + 1) & (T.nlaunch_slots - 1);
    }
    LaunchKey *e = &T.launches[j];
    e->hash = h;
    e->name = strdup(name);
    e->device = k->deviceId;
    e->context = k->contextId;
    e->grid[0] = k->gridX, e->grid[1] = k->gridY, e->grid[2] = k->gridZ;
    e->block[0] = k->blockX, e->block[1] = k->blockY, e->block[2] = k->blockZ;
    e->regs = k->registersPerThread;
    e->ssmem = k->staticSharedMemory;
    e->dsmem = k->dynamicSharedMemory;
    e->local = k->localMemoryPerThread;
    e->id = (uint32_t)T.nlaunch++;

    /* its dictionary record */
    sbuf b = {0};
    sb_put(&b, w->head, strlen(w->head));
    SB_LIT(&b, "dict");
    sb_put(&b, w->envelope, w->envelope_n);
    size_t seq_at = b.n;
    KEY_U64(&b, ",\"kind\":\"launch\",\"id\":", e->id);
    SB_LIT(&b, ",\"launch\":{\"name\":");
    char *dem = NULL;
    if (p_demangle && name[0] == '_' && name[1] == 'Z') {
        int status = 0;
        dem = p_demangle(name, NULL, NULL, &status);
        if (status != 0) {
            free(dem);
            dem = NULL;
        }
    }
    const char *shown = dem ? dem : name;
    sb_json_str(&b, shown, strlen(shown));
    free(dem);
    SB_LIT(&b, ",\"mangled\":");
    sb_json_str(&b, name, strlen(name));
    KEY_U64(&b, ",\"device_id\":", k->deviceId);
    KEY_U64(&b, ",\"context_id\":", k->contextId);
    KEY_I64(&b, ",\"grid\":[", k->gridX);
    KEY_I64(&b, ",", k->gridY);
    KEY_I64(&b, ",", k->gridZ);
    KEY_I64(&b, "],\"block\":[", k->blockX);
    KEY_I64(&b, ",", k->blockY);
    KEY_I64(&b, ",", k->blockZ);
    KEY_U64(&b, "],\"num_regs\":", k->registersPerThread);
    KEY_I64(&b, ",\"static_shared_bytes\":", k->staticSharedMemory);
    KEY_I64(&b, ",\"dyn_shared_bytes\":", k->dynamicSharedMemory);
    KEY_U64(&b, ",\"local_bytes\":", k->localMemoryPerThread);
    if (k->deviceId < MAX_DEVICES && T.lim[k->deviceId].valid) {
        Occ o = occupancy(&T.lim[k->deviceId], k->blockX * k->blockY * k->blockZ, k->registersPerThread,
                          k->staticSharedMemory + k->dynamicSharedMemory);
        SB_LIT(&b, ",\"occupancy\":");
        sb_f(&b, o.occ, 4);
        SB_LIT(&b, ",\"reg_occupancy\":");
        sb_f(&b, o.reg, 4);
        SB_LIT(&b, ",\"smem_occupancy\":");
        sb_f(&b, o.smem, 4);
        SB_LIT(&b, ",\"warp_occupancy\":");
        sb_f(&b, o.warp, 4);
        SB_LIT(&b, ",\"block_occupancy\":");
        sb_f(&b, o.block, 4);
        SB_LIT(&b, ",\"limiting_resource\":\"");
        sb_put(&b, o.limiter, strlen(o.limiter));
        KEY_I64(&b, "\",\"max_active_blocks\":", o.max_blocks);
    }
    KEY_U64(&b, ",\"cache_config_requested\":", k->cacheConfig.config.requested);
    KEY_U64(&b, ",\"cache_config_executed\":", k->cacheConfig.config.executed);
    KEY_U64(&b, ",\"shared_mem_config_bytes\":", k->sharedMemoryExecuted);
    SB_LIT(&b, "}}");
    w_set_dict_locked(w, DK_LAUNCH, e->id, b.p, b.n, seq_at);
    free(b.p);
    return e->id;
}

/* One activity record → one line (writer locked). */
static void handle_record_locked(Writer *w, const CUpti_Activity *rec) {
    int64_t off = T.offset_ns;
    int drop_type;
    switch (rec->kind) {
        case CUPTI_ACTIVITY_KIND_KERNEL:
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
            drop_type = DROP_KERNEL;
            break;
        case CUPTI_ACTIVITY_KIND_MEMCPY:
            drop_type = DROP_MEMCPY;
            break;
        case CUPTI_ACTIVITY_KIND_MEMSET:
            drop_type = DROP_MEMSET;
            break;
        default:
            return;
    }
    /* No timestamps (start 0 or end before start): after a CUDA error such as a device-side assert, CUPTI
     * delivers the records it had not read yet so. Written, they would be kernels at 1970 that the contract
     * refuses; skipped and counted, the engine says how many (notice cupti_untimed_records). */
    uint64_t t_start, t_end;
    if (drop_type == DROP_KERNEL) {
        t_start = ((const CUpti_ActivityKernel10 *)rec)->start;
        t_end = ((const CUpti_ActivityKernel10 *)rec)->end;
    } else if (drop_type == DROP_MEMCPY) {
        t_start = ((const CUpti_ActivityMemcpy6 *)rec)->start;
        t_end = ((const CUpti_ActivityMemcpy6 *)rec)->end;
    } else {
        t_start = ((const CUpti_ActivityMemset4 *)rec)->start;
        t_end = ((const CUpti_ActivityMemset4 *)rec)->end;
    }
    if (t_start == 0 || t_end < t_start) {
        atomic_fetch_add_explicit(&T.untimed, 1, memory_order_relaxed);
        return;
    }
    if (w->pending.n > w->max_pending) { /* the disk cannot keep up: count, never block CUPTI */
        w_count_drop_locked(w, drop_type);
        return;
    }
    w_before_record_locked(w);
    sbuf *b = &w->pending;
    size_t before = b->n;
    if (drop_type == DROP_KERNEL) {
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        uint32_t lid = launch_id_locked(w, k);
        SiteCopy s = site_of(k->correlationId);
        if (s.ok) atomic_fetch_add_explicit(&T.matched, 1, memory_order_relaxed);
        else atomic_fetch_add_explicit(&T.unmatched, 1, memory_order_relaxed);
        w_ensure_dict_locked(w, DK_LAUNCH, lid);
        if (s.ok && s.stack) w_ensure_dict_locked(w, DK_STACK, s.stack - 1);
        w_begin_line_locked(w, "kernel", 6);
        KEY_U64(b, ",\"launch_id\":", lid);
        KEY_U64(b, ",\"device_id\":", k->deviceId);
        KEY_U64(b, ",\"stream_id\":", k->streamId);
        KEY_U64(b, ",\"corr_id\":", k->correlationId);
        KEY_I64(b, ",\"start_ns\":", (int64_t)k->start + off);
        KEY_I64(b, ",\"end_ns\":", (int64_t)k->end + off);
        put_site_fields(b, &s, k->start, 1);
        if (k->graphId) {
            KEY_U64(b, ",\"graph_id\":", k->graphId);
            if (k->graphNodeId) KEY_U64(b, ",\"graph_node_id\":", k->graphNodeId);
        }
        atomic_fetch_add_explicit(&T.kernels, 1, memory_order_relaxed);
    } else if (drop_type == DROP_MEMCPY) {
        const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
        SiteCopy s = site_of(m->correlationId);
        if (s.ok && s.stack) w_ensure_dict_locked(w, DK_STACK, s.stack - 1);
        w_begin_line_locked(w, "memcpy", 6);
        KEY_U64(b, ",\"device_id\":", m->deviceId);
        KEY_U64(b, ",\"stream_id\":", m->streamId);
        KEY_U64(b, ",\"corr_id\":", m->correlationId);
        KEY_I64(b, ",\"start_ns\":", (int64_t)m->start + off);
        KEY_I64(b, ",\"end_ns\":", (int64_t)m->end + off);
        KEY_U64(b, ",\"bytes\":", m->bytes);
        SB_LIT(b, ",\"copy_kind\":\"");
        const char *ck = ENUM_NAME(COPY_KINDS, m->copyKind);
        sb_put(b, ck, strlen(ck));
        SB_LIT(b, "\",\"src_kind\":\"");
        const char *sk = ENUM_NAME(MEM_KINDS, m->srcKind);
        sb_put(b, sk, strlen(sk));
        SB_LIT(b, "\",\"dst_kind\":\"");
        const char *dk = ENUM_NAME(MEM_KINDS, m->dstKind);
        sb_put(b, dk, strlen(dk));
        SB_LIT(b, "\"");
        if (m->end > m->start) {
            SB_LIT(b, ",\"throughput_gbps\":");
            sb_f(b, (double)m->bytes / (double)(m->end - m->start), 3);
        }
        KEY_U64(b, ",\"context_id\":", m->contextId);
        if (m->graphId) KEY_U64(b, ",\"graph_id\":", m->graphId);
        put_site_fields(b, &s, m->start, 1);
        atomic_fetch_add_explicit(&T.memcpys, 1, memory_order_relaxed);
    } else {
        const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
        SiteCopy s = site_of(m->correlationId);
        if (s.ok && s.stack) w_ensure_dict_locked(w, DK_STACK, s.stack - 1);
        w_begin_line_locked(w, "memset", 6);
        KEY_U64(b, ",\"device_id\":", m->deviceId);
        KEY_U64(b, ",\"stream_id\":", m->streamId);
        KEY_U64(b, ",\"corr_id\":", m->correlationId);
        KEY_I64(b, ",\"start_ns\":", (int64_t)m->start + off);
        KEY_I64(b, ",\"end_ns\":", (int64_t)m->end + off);
        KEY_U64(b, ",\"bytes\":", m->bytes);
        KEY_U64(b, ",\"value\":", m->value);
        SB_LIT(b, ",\"mem_kind\":\"");
        const char *mk = ENUM_NAME(MEM_KINDS, m->memoryKind);
        sb_put(b, mk, strlen(mk));
        SB_LIT(b, "\"");
        KEY_U64(b, ",\"context_id\":", m->contextId);
        if (m->graphId) KEY_U64(b, ",\"graph_id\":", m->graphId);
        put_site_fields(b, &s, m->start, 0);
        atomic_fetch_add_explicit(&T.memsets, 1, memory_order_relaxed);
    }
    SB_LIT(b, "}\n");
    w_account_locked(w, before);
}

/* T.w is read on CUPTI's buffer thread and replaced or cleared by Python (attach, detach): this lock keeps
 * the writer alive while a buffer is written to it, so a detach racing a late buffer cannot free it
 * mid-use. Order: g_writer_mu before the writer's own lock; never taken with the GIL held while waiting. */
static pthread_mutex_t g_writer_mu = PTHREAD_MUTEX_INITIALIZER;

static void process_buffer(uint8_t *buf, size_t valid) {
    if (!p_cuptiActivityGetNextRecord) return;
    pthread_mutex_lock(&g_writer_mu);
    Writer *w = T.w;
    if (w) {
        pthread_mutex_lock(&w->mu);
        sync_stacks_locked(w);
        CUpti_Activity *rec = NULL;
        while (p_cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS) handle_record_locked(w, rec);
        pthread_mutex_unlock(&w->mu);
        atomic_fetch_add_explicit(&T.buffers, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g_writer_mu);
}

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

static size_t owned_count(void) {
    size_t n = 0;
    pthread_mutex_lock(&g_owned_mu);
    for (size_t i = 0; i < g_owned_hi; i++) n += g_owned[i] != NULL;
    pthread_mutex_unlock(&g_owned_mu);
    return n;
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    size_t n = T.buf_bytes ? T.buf_bytes : (8u << 20);
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

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid) {
    if (buf && !owned_take(buf)) { /* another CUPTI client's buffer: not ours to read or free */
        atomic_fetch_add_explicit(&T.foreign_buffers, 1, memory_order_relaxed);
        return;
    }
    if (buf && valid) {
        if (T.dump_dir) { /* raw buffers for the no-GPU tests (GPUFL_NATIVE_DUMP_DIR) */
            char path[4096];
            snprintf(path, sizeof path, "%s/buffer-%06llu.bin", T.dump_dir,
                     (unsigned long long)atomic_fetch_add(&T.dump_seq, 1));
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
        if (!T.discard) process_buffer(buf, valid);
    }
    size_t dropped = 0;
    if (p_cuptiActivityGetNumDroppedRecords && p_cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS &&
        dropped) {
        atomic_fetch_add(&T.cupti_dropped, dropped);
        pthread_mutex_lock(&g_writer_mu);
        if (T.w) {
            pthread_mutex_lock(&T.w->mu);
            for (size_t i = 0; i < dropped; i++) w_count_drop_locked(T.w, DROP_CUPTI);
            pthread_mutex_unlock(&T.w->mu);
        }
        pthread_mutex_unlock(&g_writer_mu);
    }
    free(buf);
}

/* ------------------------------------------------------------------------------------------------ module API */

/* dlopen libcupti and resolve what we call; NULL on success, else why not. */
static const char *load_cupti(const char *path) {
    static char err[512];
    if (T.loaded) return NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        snprintf(err, sizeof err, "cannot load %s: %s", path, dlerror());
        return err;
    }
#define LOAD(name)                                                    \
    do {                                                              \
        *(void **)&p_##name = dlsym(h, #name);                        \
        if (!p_##name) {                                              \
            snprintf(err, sizeof err, "%s has no %s", path, #name);   \
            return err;                                               \
        }                                                             \
    } while (0)
    LOAD(cuptiGetVersion);
    LOAD(cuptiGetResultString);
    LOAD(cuptiGetTimestamp);
    LOAD(cuptiSubscribe);
    LOAD(cuptiUnsubscribe);
    LOAD(cuptiEnableCallback);
    LOAD(cuptiActivityEnable);
    LOAD(cuptiActivityDisable);
    LOAD(cuptiActivityRegisterCallbacks);
    LOAD(cuptiActivityGetNextRecord);
    LOAD(cuptiActivityFlushAll);
    LOAD(cuptiFinalize);
    *(void **)&p_cuptiActivityFlushPeriod = dlsym(h, "cuptiActivityFlushPeriod");
    *(void **)&p_cuptiActivityGetNumDroppedRecords = dlsym(h, "cuptiActivityGetNumDroppedRecords");
    *(void **)&p_cuptiActivitySetAttribute = dlsym(h, "cuptiActivitySetAttribute");
    *(void **)&p_demangle = dlsym(RTLD_DEFAULT, "__cxa_demangle");
    if (!p_demangle) {
        void *cxx = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_GLOBAL);
        if (cxx) *(void **)&p_demangle = dlsym(cxx, "__cxa_demangle");
    }
    uint32_t v = 0;
    p_cuptiGetVersion(&v);
    T.version = v;
    g_lib = h;
    T.loaded = 1;
    return NULL;
}

static int alloc_sites(void) {
    if (T.sites) return 0;
    T.sites = calloc((size_t)SITE_MASK + 1, sizeof(Site));
    return T.sites ? 0 : -1;
}

/* Subscribe, enable launch callbacks and activity kinds. NULL on success (*enabled = callbacks enabled, -1
 * when switched off for diagnostics), else why not (the CUPTI error text). */
static const char *start_tracing(size_t bufbytes, unsigned period_ms, int *enabled_out) {
    static char err[256];
    if (T.active) return NULL;
    T.buf_bytes = bufbytes;
    CUptiResult r;
    /* Diagnostics only (the overhead benches attribute cost with them): GPUFL_NATIVE_CALLBACKS=0 leaves the
     * launch callbacks off, GPUFL_NATIVE_ACTIVITY=0 the activity records, GPUFL_NATIVE_SUBSCRIBE=0 the
     * subscriber itself (so no callbacks of any domain), GPUFL_NATIVE_NVTX=0 the NVTX callbacks;
     * GPUFL_NATIVE_DOMAINS lists the launch-callback domains ("driver" by default).
     * Driver-API callbacks alone see every launch: the runtime's launches reach the driver too, and their
     * kernels carry the driver call's correlation id (every kernel joined on the H100, runtime-launched and
     * cuBLASLt's driver launches alike), so runtime-API callbacks would only add CUPTI dispatches. */
    const char *cb_env = getenv("GPUFL_NATIVE_CALLBACKS");
    const char *act_env = getenv("GPUFL_NATIVE_ACTIVITY");
    const char *sub_env = getenv("GPUFL_NATIVE_SUBSCRIBE");
    const char *nvtx_env = getenv("GPUFL_NATIVE_NVTX");
    const char *dom_env = getenv("GPUFL_NATIVE_DOMAINS");
    int want_sub = !(sub_env && sub_env[0] == '0');
    int want_cb = want_sub && !(cb_env && cb_env[0] == '0');
    int want_act = !(act_env && act_env[0] == '0');
    int want_nvtx = want_sub && !(nvtx_env && nvtx_env[0] == '0');
    int want_rt = dom_env && strstr(dom_env, "runtime");
    int want_drv = !dom_env || strstr(dom_env, "driver");
    /* More diagnostics, to find what CUPTI's own activity tracing costs (docs/benchmarks.md):
     * GPUFL_NATIVE_KERNEL_KIND=serial records kernels with CUPTI_ACTIVITY_KIND_KERNEL (which serialises
     * them), GPUFL_NATIVE_COPIES=0 leaves memcpy/memset activity off, GPUFL_NATIVE_DISCARD=1 frees CUPTI's
     * buffers unread, GPUFL_NATIVE_HOST_PINNED=1 puts CUPTI's device-side timestamp buffers in pinned host
     * memory, GPUFL_NATIVE_DEVICE_BUFFER_MB sizes them. */
    const char *kind_env = getenv("GPUFL_NATIVE_KERNEL_KIND");
    const char *copies_env = getenv("GPUFL_NATIVE_COPIES");
    const char *discard_env = getenv("GPUFL_NATIVE_DISCARD");
    const char *pinned_env = getenv("GPUFL_NATIVE_HOST_PINNED");
    const char *devbuf_env = getenv("GPUFL_NATIVE_DEVICE_BUFFER_MB");
    T.kernel_kind = kind_env && !strcmp(kind_env, "serial") ? CUPTI_ACTIVITY_KIND_KERNEL
                                                            : CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
    T.copies = !(copies_env && copies_env[0] == '0');
    T.discard = discard_env && discard_env[0] == '1';
    if (p_cuptiActivitySetAttribute && pinned_env && pinned_env[0] == '1') {
        uint8_t one = 1;
        size_t sz = sizeof one;
        p_cuptiActivitySetAttribute(CUPTI_ACTIVITY_ATTR_MEM_ALLOCATION_TYPE_HOST_PINNED, &sz, &one);
    }
    if (p_cuptiActivitySetAttribute && devbuf_env && atoi(devbuf_env) > 0) {
        size_t bytes = (size_t)atoi(devbuf_env) << 20, sz = sizeof bytes;
        p_cuptiActivitySetAttribute(CUPTI_ACTIVITY_ATTR_DEVICE_BUFFER_SIZE, &sz, &bytes);
    }
    if (want_sub) {
        /* Subscribe first: failing here means another CUPTI client (torch.profiler, nsys) owns this process,
         * and registering activity buffers under its feet hung its flush (seen on the H100). */
        r = p_cuptiSubscribe(&T.sub, (CUpti_CallbackFunc)on_api, NULL);
        if (r != CUPTI_SUCCESS) {
            snprintf(err, sizeof err, "cuptiSubscribe: %s", cupti_err(r));
            return err;
        }
        T.subscribed = 1;
    }
    int enabled = 0;
    if (want_cb) {
        for (size_t i = 0; want_rt && i < sizeof RUNTIME_CBIDS / sizeof *RUNTIME_CBIDS; i++)
            enabled += p_cuptiEnableCallback(1, T.sub, CUPTI_CB_DOMAIN_RUNTIME_API, RUNTIME_CBIDS[i]) == CUPTI_SUCCESS;
        for (size_t i = 0; want_drv && i < sizeof DRIVER_CBIDS / sizeof *DRIVER_CBIDS; i++)
            enabled += p_cuptiEnableCallback(1, T.sub, CUPTI_CB_DOMAIN_DRIVER_API, DRIVER_CBIDS[i]) == CUPTI_SUCCESS;
    }
    static const CUpti_CallbackId NVTX_CBIDS[] = {
        CUPTI_CBID_NVTX_nvtxRangePushA,       CUPTI_CBID_NVTX_nvtxRangePushEx,     CUPTI_CBID_NVTX_nvtxRangePop,
        CUPTI_CBID_NVTX_nvtxDomainRangePushEx, CUPTI_CBID_NVTX_nvtxDomainRangePop, CUPTI_CBID_NVTX_nvtxNameOsThreadA,
        CUPTI_CBID_NVTX_nvtxRangeStartA,      CUPTI_CBID_NVTX_nvtxRangeStartEx,    CUPTI_CBID_NVTX_nvtxDomainRangeStartEx,
        CUPTI_CBID_NVTX_nvtxRangeEnd,         CUPTI_CBID_NVTX_nvtxDomainRangeEnd};
#ifndef GPUFL_INJECTION /* scopes are written by the Python engine; the injection build has none */
    for (size_t i = 0; want_nvtx && i < sizeof NVTX_CBIDS / sizeof *NVTX_CBIDS; i++)
        p_cuptiEnableCallback(1, T.sub, CUPTI_CB_DOMAIN_NVTX, NVTX_CBIDS[i]);
#else
    (void)want_nvtx;
    (void)NVTX_CBIDS;
#endif
    r = p_cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
    if (want_act) {
        if (r == CUPTI_SUCCESS) r = p_cuptiActivityEnable(T.kernel_kind);
        if (r == CUPTI_SUCCESS && T.copies) r = p_cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
        if (r == CUPTI_SUCCESS && T.copies) r = p_cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
    }
    if (r != CUPTI_SUCCESS) {
        p_cuptiActivityDisable(T.kernel_kind);
        p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
        p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET);
        if (T.subscribed) p_cuptiUnsubscribe(T.sub);
        T.subscribed = 0;
        T.sub = NULL;
        snprintf(err, sizeof err, "CUPTI activity: %s", cupti_err(r));
        return err;
    }
    /* A killed program loses at most about this much (buffers are otherwise delivered when full). */
    if (p_cuptiActivityFlushPeriod && period_ms) p_cuptiActivityFlushPeriod(period_ms);
    T.active = 1;
    *enabled_out = want_cb ? enabled : -1;
    return NULL;
}

/* Flush, disable, unsubscribe, and finalize when `finalize` (CUPTI may call back into us meanwhile).
 * Stepping aside for another CUPTI client does not finalize: unsubscribing is all the other client needs
 * to subscribe, and a finalize followed by its re-initialisation is the teardown CUPTI users report
 * crashes in (Kineto turns its own CUPTI teardown off around CUDA graphs for that reason). */
static void stop_tracing(CUptiResult *flush, CUptiResult *fin, int finalize) {
    *flush = p_cuptiActivityFlushAll(1);
    p_cuptiActivityDisable(T.kernel_kind);
    p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
    p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET);
    p_cuptiActivityFlushAll(1);
    if (T.subscribed) p_cuptiUnsubscribe(T.sub);
    T.subscribed = 0;
    T.sub = NULL;
    /* Without finalize, applications stayed 10-20% slower after profiling (pytorch/pytorch#146604). */
    /* our delivery period must not stay on for the next client (CUPTI keeps it until finalize) */
    if (p_cuptiActivityFlushPeriod) p_cuptiActivityFlushPeriod(0);
    *fin = finalize ? p_cuptiFinalize() : CUPTI_SUCCESS;
    T.active = 0;
}

#ifndef GPUFL_INJECTION
static PyObject *py_load(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
    const char *err = load_cupti(path);
    if (err) return PyErr_Format(PyExc_OSError, "%s", err);
    return PyLong_FromUnsignedLong(T.version);
}

static PyObject *py_cupti_version(PyObject *self, PyObject *unused) { return PyLong_FromUnsignedLong(T.version); }

static PyObject *py_timestamp(PyObject *self, PyObject *unused) {
    if (!T.loaded) return PyErr_Format(PyExc_RuntimeError, "libcupti not loaded");
    uint64_t ts = 0;
    CUptiResult r = p_cuptiGetTimestamp(&ts);
    if (r != CUPTI_SUCCESS) return PyErr_Format(PyExc_RuntimeError, "cuptiGetTimestamp: %s", cupti_err(r));
    return PyLong_FromUnsignedLongLong(ts);
}

static int set_limits(PyObject *limits) {
    memset(T.lim, 0, sizeof T.lim);
    if (!limits || limits == Py_None) return 0;
    PyObject *it = PyObject_GetIter(limits);
    if (!it) return -1;
    PyObject *item;
    while ((item = PyIter_Next(it))) {
        DevLimits l = {1};
        int dev;
        int ok = PyArg_ParseTuple(item, "iiiiiiiiii", &dev, &l.warp_size, &l.max_threads_per_sm,
                                  &l.max_blocks_per_sm, &l.max_threads_per_block, &l.regs_per_sm,
                                  &l.regs_per_block, &l.shared_mem_per_sm, &l.shared_mem_per_block_optin,
                                  &l.reserved_shared_mem_per_block);
        Py_DECREF(item);
        if (!ok) {
            Py_DECREF(it);
            return -1;
        }
        if (dev >= 0 && dev < MAX_DEVICES) T.lim[dev] = l;
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* attach(writer, limits, offset_ns, stacks): the writer records go to, device limits, the clock offset. */
static PyObject *py_attach(PyObject *self, PyObject *args) {
    PyObject *w, *limits;
    long long offset;
    int stacks;
    if (!PyArg_ParseTuple(args, "O!OLp", &WriterType, &w, &limits, &offset, &stacks)) return NULL;
    if (set_limits(limits)) return NULL;
    if (alloc_sites()) return PyErr_NoMemory();
    Py_INCREF(w);
    Writer *old;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&g_writer_mu); /* a buffer may be being written to the old one */
    old = T.w;
    T.w = (Writer *)w;
    pthread_mutex_unlock(&g_writer_mu);
    Py_END_ALLOW_THREADS Py_XDECREF(old);
    T.offset_ns = offset;
    T.stacks = stacks;
    const char *dump = getenv("GPUFL_NATIVE_DUMP_DIR");
    free(T.dump_dir);
    T.dump_dir = dump && *dump ? strdup(dump) : NULL;
    Py_RETURN_NONE;
}

/* start(buffer_bytes, flush_period_ms) -> launch callbacks enabled (-1: switched off) */
static PyObject *py_start(PyObject *self, PyObject *args) {
    unsigned long long bufbytes;
    unsigned int period_ms;
    if (!PyArg_ParseTuple(args, "KI", &bufbytes, &period_ms)) return NULL;
    if (!T.loaded || !T.w) return PyErr_Format(PyExc_RuntimeError, "load() and attach() first");
    int enabled = 0;
    const char *err = start_tracing((size_t)bufbytes, period_ms, &enabled);
    if (err) return PyErr_Format(PyExc_RuntimeError, "%s", err);
    return PyLong_FromLong(enabled);
}

/* finalize() -> error text ("" on success): cuptiFinalize, detaching every subscriber (gpufl.client.engines.handover
 * calls it at interpreter exit when torch.profiler's Kineto kept CUPTI). */
static PyObject *py_finalize(PyObject *self, PyObject *unused) {
    if (!T.loaded || T.active) return PyUnicode_FromString(T.loaded ? "tracing is active" : "not loaded");
    CUptiResult r;
    Py_BEGIN_ALLOW_THREADS r = p_cuptiFinalize();
    Py_END_ALLOW_THREADS return PyUnicode_FromString(r == CUPTI_SUCCESS ? "" : cupti_err(r));
}

/* stop(finalize=True) -> (flush error, finalize error); without the GIL (CUPTI may call back into us). */
static PyObject *py_stop(PyObject *self, PyObject *args) {
    int finalize = 1;
    if (!PyArg_ParseTuple(args, "|p", &finalize)) return NULL;
    if (!T.active) Py_RETURN_NONE;
    CUptiResult fr = CUPTI_SUCCESS, zr = CUPTI_SUCCESS;
    Py_BEGIN_ALLOW_THREADS stop_tracing(&fr, &zr, finalize);
    Py_END_ALLOW_THREADS return Py_BuildValue("(ss)", fr == CUPTI_SUCCESS ? "" : cupti_err(fr),
                                              zr == CUPTI_SUCCESS ? "" : cupti_err(zr));
}

static PyObject *py_stats(PyObject *self, PyObject *unused) {
    size_t nst;
    pthread_mutex_lock(&g_stack_mu);
    nst = g_nstacks;
    pthread_mutex_unlock(&g_stack_mu);
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsnsnsKsnsK}", "buffers", (unsigned long long)T.buffers, "kernels",
                         (unsigned long long)T.kernels, "memcpys", (unsigned long long)T.memcpys, "memsets",
                         (unsigned long long)T.memsets, "matched", (unsigned long long)T.matched, "unmatched",
                         (unsigned long long)T.unmatched, "launch_callbacks", (unsigned long long)T.launches_cb,
                         "cupti_dropped", (unsigned long long)T.cupti_dropped, "stacks", (Py_ssize_t)nst,
                         "launch_configs", (Py_ssize_t)T.nlaunch, "foreign_buffers",
                         (unsigned long long)T.foreign_buffers, "buffers_outstanding", (Py_ssize_t)owned_count(),
                         "untimed", (unsigned long long)T.untimed);
}

/* replay_buffer(bytes, names): parse a recorded raw activity buffer as if CUPTI had delivered it (tests).
 * `names` maps the kernel-name pointers recorded in the buffer to the names (they pointed into CUPTI's
 * memory in the recording process); a kernel whose pointer is missing is refused. */
static PyObject *py_replay_buffer(PyObject *self, PyObject *args) {
    Py_buffer b;
    PyObject *names;
    if (!PyArg_ParseTuple(args, "y*O!", &b, &PyDict_Type, &names)) return NULL;
    if (!T.loaded || !T.w) {
        PyBuffer_Release(&b);
        return PyErr_Format(PyExc_RuntimeError, "load() and attach() first");
    }
    uint8_t *copy = NULL;
    if (posix_memalign((void **)&copy, 8, (size_t)b.len + 8)) {
        PyBuffer_Release(&b);
        return PyErr_NoMemory();
    }
    memcpy(copy, b.buf, (size_t)b.len);
    size_t n = (size_t)b.len;
    PyBuffer_Release(&b);
    CUpti_Activity *r = NULL;
    while (p_cuptiActivityGetNextRecord(copy, n, &r) == CUPTI_SUCCESS) {
        if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && r->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
        CUpti_ActivityKernel10 *k = (CUpti_ActivityKernel10 *)r;
        PyObject *key = PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)k->name);
        PyObject *name = key ? PyDict_GetItemWithError(names, key) : NULL;
        Py_XDECREF(key);
        if (!name || !PyBytes_Check(name)) {
            free(copy);
            if (!PyErr_Occurred()) PyErr_Format(PyExc_KeyError, "no name recorded for a kernel's name pointer");
            return NULL;
        }
        k->name = PyBytes_AS_STRING(name); /* `names` outlives the call */
    }
    Py_BEGIN_ALLOW_THREADS process_buffer(copy, n);
    Py_END_ALLOW_THREADS free(copy);
    Py_RETURN_NONE;
}

/* record_launch(corr, enter_realtime_ns, dur): what the launch callback stores, for tests without a GPU. */
static PyObject *py_record_launch(PyObject *self, PyObject *args) {
    unsigned int corr;
    unsigned long long enter, dur;
    if (!PyArg_ParseTuple(args, "IKK", &corr, &enter, &dur)) return NULL;
    if (alloc_sites()) return PyErr_NoMemory();
    Site *s = &T.sites[corr & SITE_MASK];
    atomic_store(&s->corr, 0);
    s->thread = thread_id();
    s->scope = current_scope();
    Py_BEGIN_ALLOW_THREADS s->stack = T.stacks ? capture_stack() : 0;
    Py_END_ALLOW_THREADS s->enter = enter;
    s->dur = dur;
    atomic_store(&s->corr, corr);
    Py_RETURN_NONE;
}

/* nvtx_call(cbid, message, range_id): deliver an NVTX callback as CUPTI would (tests without a GPU);
 * range_id is nvtxRangeStart*'s return value or nvtxRangeEnd's argument. */
static PyObject *py_nvtx_call(PyObject *self, PyObject *args) {
    unsigned int cbid;
    const char *msg;
    unsigned long long id;
    if (!PyArg_ParseTuple(args, "IzK", &cbid, &msg, &id)) return NULL;
    nvtxEventAttributes_t attr = {0};
    attr.version = NVTX_VERSION;
    attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attr.messageType = NVTX_MESSAGE_TYPE_ASCII;
    attr.message.ascii = msg;
    nvtxRangeId_t ret = id;
    union {
        nvtxRangePushA_params push;
        nvtxRangePushEx_params pushex;
        nvtxRangeStartA_params start;
        nvtxRangeStartEx_params startex;
        nvtxDomainRangeStartEx_params dstartex;
        nvtxRangeEnd_params end;
        nvtxDomainRangeEnd_params dend;
        nvtxNameOsThreadA_params thread;
    } p;
    memset(&p, 0, sizeof p);
    switch (cbid) {
        case CUPTI_CBID_NVTX_nvtxRangePushA: p.push.message = msg; break;
        case CUPTI_CBID_NVTX_nvtxRangePushEx: p.pushex.eventAttrib = &attr; break;
        case CUPTI_CBID_NVTX_nvtxRangeStartA: p.start.message = msg; break;
        case CUPTI_CBID_NVTX_nvtxRangeStartEx: p.startex.eventAttrib = &attr; break;
        case CUPTI_CBID_NVTX_nvtxDomainRangeStartEx: p.dstartex.core.eventAttrib = &attr; break;
        case CUPTI_CBID_NVTX_nvtxRangeEnd: p.end.id = id; break;
        case CUPTI_CBID_NVTX_nvtxDomainRangeEnd: p.dend.core.id = id; break;
        case CUPTI_CBID_NVTX_nvtxNameOsThreadA: p.thread.threadId = (uint32_t)id; p.thread.name = msg; break;
        default: break;
    }
    CUpti_NvtxData d = {.functionName = "", .functionParams = &p, .functionReturnValue = &ret};
    on_nvtx(cbid, &d);
    Py_RETURN_NONE;
}

/* configure(callbacks, activity): switch the launch callbacks / activity records on or off while tracing
 * (diagnostics: bench/native_attribution.py measures each part's cost inside one process). */
static PyObject *py_configure(PyObject *self, PyObject *args) {
    int cb, act, runtime = 0, driver = 1, empty = 0; /* defaults: what start() enables */
    if (!PyArg_ParseTuple(args, "pp|ppp", &cb, &act, &runtime, &driver, &empty)) return NULL;
    if (!T.active) return PyErr_Format(PyExc_RuntimeError, "tracing is not active");
    if (!T.subscribed) return PyErr_Format(PyExc_RuntimeError, "no CUPTI subscriber (GPUFL_NATIVE_SUBSCRIBE=0)");
    g_empty_callback = empty;
    Py_BEGIN_ALLOW_THREADS for (size_t i = 0; i < sizeof RUNTIME_CBIDS / sizeof *RUNTIME_CBIDS; i++)
        p_cuptiEnableCallback(cb && runtime, T.sub, CUPTI_CB_DOMAIN_RUNTIME_API, RUNTIME_CBIDS[i]);
    for (size_t i = 0; i < sizeof DRIVER_CBIDS / sizeof *DRIVER_CBIDS; i++)
        p_cuptiEnableCallback(cb && driver, T.sub, CUPTI_CB_DOMAIN_DRIVER_API, DRIVER_CBIDS[i]);
    CUpti_ActivityKind kinds[3] = {T.kernel_kind, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET};
    for (int i = 0; i < (T.copies ? 3 : 1); i++) {
        if (act) p_cuptiActivityEnable(kinds[i]);
        else p_cuptiActivityDisable(kinds[i]);
    }
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* drain_nvtx() -> ([(kind, thread, inst, parent, ts_ns, name), ...], dropped) */
static PyObject *py_drain_nvtx(PyObject *self, PyObject *unused) {
    pthread_mutex_lock(&g_nvtx_mu);
    NvtxEvent *ev = g_nvtx;
    size_t n = g_nnvtx;
    uint64_t dropped = g_nvtx_dropped;
    g_nvtx = NULL;
    g_nnvtx = g_capnvtx = 0;
    g_nvtx_dropped = 0;
    pthread_mutex_unlock(&g_nvtx_mu);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        NvtxEvent *e = &ev[i];
        PyObject *t = Py_BuildValue("(iIKKLs)", e->kind, e->tid, (unsigned long long)e->inst,
                                    (unsigned long long)e->parent, (long long)e->ts, e->name);
        if (!t) {
            PyErr_Clear();
            t = Py_BuildValue("(iIKKLs)", e->kind, e->tid, (unsigned long long)e->inst,
                              (unsigned long long)e->parent, (long long)e->ts, "(undecodable)");
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    free(ev);
    if (!list) return NULL;
    return Py_BuildValue("(NK)", list, (unsigned long long)dropped);
}

static PyObject *py_detach(PyObject *self, PyObject *unused) {
    Writer *old;
    /* Wait (without the GIL) for a buffer being written, then drop the reference: a late buffer from
     * CUPTI's thread finds no writer instead of a freed one. */
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&g_writer_mu);
    old = T.w;
    T.w = NULL;
    pthread_mutex_unlock(&g_writer_mu);
    Py_END_ALLOW_THREADS Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* request_buffer() -> address; complete_buffer(address, valid): CUPTI's two buffer callbacks, driven by the
 * no-GPU tests in the order CUPTI calls them across a hand-over (complete_buffer with an address we did not
 * hand out is what CUPTI does when another client's buffer reaches our callback). */
static PyObject *py_request_buffer(PyObject *self, PyObject *unused) {
    uint8_t *buf = NULL;
    size_t size = 0, maxrec = 0;
    buffer_requested(&buf, &size, &maxrec);
    if (!buf) return PyErr_NoMemory();
    memset(buf, 0, size);
    return PyLong_FromVoidPtr(buf);
}

static PyObject *py_complete_buffer(PyObject *self, PyObject *args) {
    PyObject *addr;
    unsigned long long valid;
    if (!PyArg_ParseTuple(args, "OK", &addr, &valid)) return NULL;
    void *p = PyLong_AsVoidPtr(addr);
    if (!p && PyErr_Occurred()) return NULL;
    Py_BEGIN_ALLOW_THREADS buffer_completed(NULL, 0, (uint8_t *)p, 0, (size_t)valid);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* reset(): forget launch configurations, stacks, sites and counters (between sessions, never while active). */
static PyObject *py_reset(PyObject *self, PyObject *unused) {
    if (T.active) return PyErr_Format(PyExc_RuntimeError, "tracing is active");
    for (size_t i = 0; i < T.nlaunch_slots; i++) free(T.launches[i].name);
    free(T.launches);
    T.launches = NULL;
    T.nlaunch_slots = T.nlaunch = 0;
    pthread_mutex_lock(&g_stack_mu);
    for (size_t i = 0; i < g_stack_slots; i++) free(g_stacks[i].frames);
    free(g_stacks);
    g_stacks = NULL;
    g_stack_slots = g_nstacks = 0;
    free(g_new_stacks.p);
    memset(&g_new_stacks, 0, sizeof g_new_stacks);
    pthread_mutex_unlock(&g_stack_mu);
    if (T.sites) memset(T.sites, 0, ((size_t)SITE_MASK + 1) * sizeof(Site));
    T.buffers = T.kernels = T.memcpys = T.memsets = T.matched = T.unmatched = T.launches_cb = 0;
    T.cupti_dropped = T.foreign_buffers = T.untimed = 0;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"load", py_load, METH_VARARGS, "load(libcupti_path) -> cuptiGetVersion()"},
    {"timestamp", py_timestamp, METH_NOARGS, "cuptiGetTimestamp()"},
    {"cupti_version", py_cupti_version, METH_NOARGS, "cuptiGetVersion() of the loaded libcupti"},
    {"attach", py_attach, METH_VARARGS, "attach(writer, device_limits, offset_ns, stacks)"},
    {"start", py_start, METH_VARARGS, "start(buffer_bytes, flush_period_ms) -> launch callbacks enabled"},
    {"stop", py_stop, METH_VARARGS, "stop(finalize=True) -> (flush error, finalize error)"},
    {"finalize", py_finalize, METH_NOARGS, "cuptiFinalize() while not tracing -> error text"},
    {"detach", py_detach, METH_NOARGS, "forget the writer"},
    {"configure", py_configure, METH_VARARGS,
     "configure(callbacks, activity, runtime=False, driver=True, empty=False) while tracing (diagnostics)"},
    {"drain_nvtx", py_drain_nvtx, METH_NOARGS, "NVTX range/thread-name events since the last call"},
    {"reset", py_reset, METH_NOARGS, "forget launch configurations, stacks, sites, counters"},
    {"stats", py_stats, METH_NOARGS, "counters"},
    {"scope_enter", py_scope_enter, METH_O, "scope_enter(inst) on the entering thread"},
    {"scope_exit", py_scope_exit, METH_O, "scope_exit(inst) on the exiting thread"},
    {"replay_buffer", py_replay_buffer, METH_VARARGS, "parse a recorded raw CUPTI activity buffer"},
    {"request_buffer", py_request_buffer, METH_NOARGS, "CUPTI's buffer-requested callback (tests)"},
    {"complete_buffer", py_complete_buffer, METH_VARARGS, "CUPTI's buffer-completed callback (tests)"},
    {"record_launch", py_record_launch, METH_VARARGS, "store a launch site as the callback would"},
    {"nvtx_call", py_nvtx_call, METH_VARARGS, "nvtx_call(cbid, message, range_id): an NVTX callback, as CUPTI delivers it"},
    {NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "gpufl.client._native",
                                       "The native record path (CUPTI in C).", -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&WriterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&WriterType);
    PyModule_AddObject(m, "Writer", (PyObject *)&WriterType);
    PyModule_AddIntConstant(m, "BUILT_CUPTI_API_VERSION", CUPTI_API_VERSION);
    static const struct {
        const char *name;
        int cbid;
    } nvtx_cbids[] = {{"NVTX_RANGE_PUSH_A", CUPTI_CBID_NVTX_nvtxRangePushA},
                      {"NVTX_RANGE_PUSH_EX", CUPTI_CBID_NVTX_nvtxRangePushEx},
                      {"NVTX_RANGE_POP", CUPTI_CBID_NVTX_nvtxRangePop},
                      {"NVTX_RANGE_START_A", CUPTI_CBID_NVTX_nvtxRangeStartA},
                      {"NVTX_RANGE_START_EX", CUPTI_CBID_NVTX_nvtxRangeStartEx},
                      {"NVTX_DOMAIN_RANGE_START_EX", CUPTI_CBID_NVTX_nvtxDomainRangeStartEx},
                      {"NVTX_RANGE_END", CUPTI_CBID_NVTX_nvtxRangeEnd},
                      {"NVTX_DOMAIN_RANGE_END", CUPTI_CBID_NVTX_nvtxDomainRangeEnd},
                      {"NVTX_NAME_OS_THREAD_A", CUPTI_CBID_NVTX_nvtxNameOsThreadA}};
    for (size_t i = 0; i < sizeof nvtx_cbids / sizeof *nvtx_cbids; i++)
        PyModule_AddIntConstant(m, nvtx_cbids[i].name, nvtx_cbids[i].cbid);
    PyModule_AddIntConstant(m, "STACKS_SUPPORTED", GPUFL_FRAMES);
    for (int k = 0; k < DK_N; k++) {
        char name[32];
        snprintf(name, sizeof name, "DICT_%s", DK_NAMES[k]);
        for (char *c = name; *c; c++)
            if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 32);
        PyModule_AddIntConstant(m, name, k);
    }
    return m;
}
#endif /* !GPUFL_INJECTION */

/* ------------------------------------------------------------------------------------------------ injection */
#ifdef GPUFL_INJECTION
/* `gpufl run -- ./app` for programs that are not Python: CUDA loads this library at cuInit because
 * CUDA_INJECTION64_PATH names it, and calls InitializeInjection. `gpufl run` (the parent, in Python) owns the
 * session: it writes the scope and system streams (NVML) and passes, in the environment, the session id, the
 * device stream's segment path and its session_start line; this library writes the device stream. */

static Writer g_iw;

static void query_device_limits(void) {
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!cuda) return;
    CUresult (*get_count)(int *) = (CUresult(*)(int *))dlsym(cuda, "cuDeviceGetCount");
    CUresult (*get_dev)(CUdevice *, int) = (CUresult(*)(CUdevice *, int))dlsym(cuda, "cuDeviceGet");
    CUresult (*get_attr)(int *, CUdevice_attribute, CUdevice) =
        (CUresult(*)(int *, CUdevice_attribute, CUdevice))dlsym(cuda, "cuDeviceGetAttribute");
    int n = 0;
    if (!get_count || !get_dev || !get_attr || get_count(&n) != CUDA_SUCCESS) return;
    for (int i = 0; i < n && i < MAX_DEVICES; i++) {
        CUdevice d;
        if (get_dev(&d, i) != CUDA_SUCCESS) continue;
        DevLimits l = {0};
        int ok = 1;
#define ATTR(field, a) ok &= get_attr(&l.field, a, d) == CUDA_SUCCESS
        ATTR(warp_size, CU_DEVICE_ATTRIBUTE_WARP_SIZE);
        ATTR(max_threads_per_sm, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR);
        ATTR(max_blocks_per_sm, CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR);
        ATTR(max_threads_per_block, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
        ATTR(regs_per_sm, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR);
        ATTR(regs_per_block, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK);
        ATTR(shared_mem_per_sm, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR);
        ATTR(shared_mem_per_block_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        ATTR(reserved_shared_mem_per_block, CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK);
#undef ATTR
        l.valid = ok;
        T.lim[i] = l;
    }
}

/* realtime = cupti + offset: the narrowest of 25 brackets (least scheduling noise). */
static void measure_clock(int64_t *offset, int64_t *width) {
    *width = INT64_MAX;
    for (int i = 0; i < 25; i++) {
        int64_t t0 = realtime_ns();
        uint64_t c = 0;
        p_cuptiGetTimestamp(&c);
        int64_t t1 = realtime_ns();
        if (t1 - t0 < *width) {
            *width = t1 - t0;
            *offset = (t0 + t1) / 2 - (int64_t)c;
        }
    }
}

static void injection_exit(void) {
    if (!T.w) return;
    CUptiResult a = CUPTI_SUCCESS, b = CUPTI_SUCCESS;
    if (T.active) stop_tracing(&a, &b, 1);
    pthread_mutex_lock(&g_iw.mu);
    uint64_t records = g_iw.seq + 1 + (g_iw.drop_pending ? 1 : 0), dropped = g_iw.dropped_total;
    pthread_mutex_unlock(&g_iw.mu);
    sbuf end = {0};
    SB_LIT(&end, "{\"type\":\"session_end\",\"session_id\":");
    const char *sid = getenv("GPUFL_SESSION_ID");
    sb_json_str(&end, sid, strlen(sid));
    SB_LIT(&end, ",\"stream\":\"device\"");
    KEY_I64(&end, ",\"end_ns\":", realtime_ns());
    KEY_U64(&end, ",\"reason\":\"atexit\",\"records\":", records);
    KEY_U64(&end, ",\"dropped\":", dropped);
    SB_LIT(&end, "}");
    w_finish(&g_iw, end.p, end.n);
    free(end.p);
    T.w = NULL;
}

__attribute__((visibility("default"))) int InitializeInjection(void) {
    static int done;
    if (done) return 1;
    done = 1;
    const char *prefix = getenv("GPUFL_INJECT_PREFIX"), *suffix = getenv("GPUFL_INJECT_SUFFIX");
    const char *sid = getenv("GPUFL_SESSION_ID"), *start = getenv("GPUFL_INJECT_SESSION_START");
    const char *lib = getenv("GPUFL_LIBCUPTI"), *opts = getenv("GPUFL_INJECT_OPTS");
    /* Programs this one starts are not injected again: their device stream would collide with ours. */
    unsetenv("CUDA_INJECTION64_PATH");
    if (!prefix || !suffix || !sid || !start) {
        fprintf(stderr, "gpufl: loaded by CUDA without `gpufl run`'s environment; not profiling\n");
        return 1;
    }
    unsigned long long max_bytes = 64ull << 20, bufbytes = 8ull << 20;
    double max_age = 600, interval = 0.05;
    if (opts) sscanf(opts, "%llu:%lf:%lf:%llu", &max_bytes, &max_age, &interval, &bufbytes);
    const char *err = load_cupti(lib && *lib ? lib : "libcupti.so");
    if (err) {
        fprintf(stderr, "gpufl: not profiling: %s\n", err);
        return 1;
    }
    w_init(&g_iw, prefix, suffix, sid, "device", max_bytes, max_age, interval, 0);
    if (w_start(&g_iw)) {
        fprintf(stderr, "gpufl: not profiling: %s\n", g_iw.errmsg);
        return 1;
    }
    /* session_start as gpufl run composed it, with this process's pid and the measured clock offset */
    int64_t offset = 0, width = 0;
    measure_clock(&offset, &width);
    sbuf line = {0};
    const char *pid_at = strstr(start, "\"pid\":0,");
    size_t n = strlen(start);
    while (n && (start[n - 1] == '\n' || start[n - 1] == ' ')) n--;
    if (n && start[n - 1] == '}') n--; /* reopen the object: pid, version and clock go in */
    if (pid_at && (size_t)(pid_at - start) < n) {
        sb_put(&line, start, (size_t)(pid_at - start));
        KEY_U64(&line, "\"pid\":", (uint64_t)getpid());
        SB_LIT(&line, ",");
        const char *rest = pid_at + strlen("\"pid\":0,");
        sb_put(&line, rest, n - (size_t)(rest - start));
    } else {
        sb_put(&line, start, n);
    }
    KEY_I64(&line, ",\"cupti_version\":", T.version);
    KEY_I64(&line, ",\"clock\":{\"offset_ns\":", offset);
    KEY_I64(&line, ",\"measured_at_ns\":", realtime_ns());
    KEY_I64(&line, ",\"uncertainty_ns\":", width / 2 + 1);
    SB_LIT(&line, "}}");
    pthread_mutex_lock(&g_iw.mu);
    int bad = w_append_python_line_locked(&g_iw, line.p, line.n);
    pthread_mutex_unlock(&g_iw.mu);
    free(line.p);
    if (bad) fprintf(stderr, "gpufl: GPUFL_INJECT_SESSION_START has no stream field\n");
    if (alloc_sites()) return 1;
    T.w = &g_iw;
    T.offset_ns = offset;
    T.stacks = 0;
    int enabled = 0;
    err = start_tracing((size_t)bufbytes, 500, &enabled);
    if (err) fprintf(stderr, "gpufl: kernel tracing unavailable: %s\n", err);
    atexit(injection_exit);
    return 1;
}
#endif

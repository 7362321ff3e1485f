/* py_writer.c — gpufl.client._native.Writer: the Python type over writer.c, which the session's native
 * device writer (gpufl.client.writer.NativeStreamWriter) drives. Not in the injection build. */
#include "gpufl_native.h"

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
    w_free(w);
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

PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gpufl.client._native.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One stream's writer: segments, rotation, seq, per-segment dictionary records.",
    .tp_new = Writer_new,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
};
#endif /* !GPUFL_INJECTION */

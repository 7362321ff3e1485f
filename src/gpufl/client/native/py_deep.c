/* py_deep.c — the Python binding of the deep engines (deep.c): gpufl.client.engines.deep drives them and
 * writes their records. Every CUPTI call runs without the GIL. Not in the injection build. */
#include "gpufl_native.h"

#ifndef GPUFL_INJECTION
#include "deep.h"

static PyObject *str_or_none(const char *s) {
    if (s && *s) return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
    Py_RETURN_NONE;
}

/* deep_watch(cubin_budget_bytes) -> None, or why module cubins cannot be watched (no source lines then) */
static PyObject *py_deep_watch(PyObject *self, PyObject *args) {
    unsigned long long budget;
    if (!PyArg_ParseTuple(args, "K", &budget)) return NULL;
    if (!g_trace.loaded) return PyUnicode_FromString("libcupti is not loaded");
    const char *e;
    Py_BEGIN_ALLOW_THREADS e = deep_watch_modules((size_t)budget);
    Py_END_ALLOW_THREADS return str_or_none(e);
}

/* deep_prepare_sass() -> None, or why SASS metrics cannot run here (at the engine's start; set up at the first range) */
static PyObject *py_deep_prepare_sass(PyObject *self, PyObject *unused) {
    if (!g_trace.loaded) return PyUnicode_FromString("libcupti is not loaded");
    const char *e;
    Py_BEGIN_ALLOW_THREADS e = deep_prepare_sass();
    Py_END_ALLOW_THREADS return str_or_none(e);
}

/* deep_setup(sass, pc, period_log2, collect_pcs) -> (error, sass_error, pc_error, device, stall reasons) */
static PyObject *py_deep_setup(PyObject *self, PyObject *args) {
    int sass, pc, period;
    unsigned long long npcs;
    if (!PyArg_ParseTuple(args, "ppiK", &sass, &pc, &period, &npcs)) return NULL;
    if (!g_trace.loaded) return Py_BuildValue("(sOOiO)", "libcupti is not loaded", Py_None, Py_None, -1, Py_None);
    const char *e;
    Py_BEGIN_ALLOW_THREADS e = deep_setup(sass, pc, period, (size_t)npcs);
    Py_END_ALLOW_THREADS if (e) return Py_BuildValue("(NOOiO)", str_or_none(e), Py_None, Py_None, -1, Py_None);
    PyObject *reasons = PyList_New((Py_ssize_t)g_deep.nreasons);
    if (!reasons) return NULL;
    for (size_t i = 0; i < g_deep.nreasons; i++) PyList_SET_ITEM(reasons, (Py_ssize_t)i, str_or_none(g_deep.reason_names[i]));
    return Py_BuildValue("(ONNiN)", Py_None, str_or_none(sass ? g_deep.sass_error : NULL),
                         str_or_none(pc ? g_deep.pc_error : NULL), g_deep.device, reasons);
}

/* deep_begin() -> (sass_error, pc_error) of this range's start */
static PyObject *py_deep_begin(PyObject *self, PyObject *unused) {
    if (!g_deep.ready) return Py_BuildValue("(ss)", "not set up", "not set up");
    Py_BEGIN_ALLOW_THREADS deep_begin();
    Py_END_ALLOW_THREADS return Py_BuildValue("(NN)", str_or_none(g_deep.range_sass_error),
                                              str_or_none(g_deep.range_pc_error));
}

static PyObject *result_dict(DeepResult *r) {
    PyObject *sass = PyList_New((Py_ssize_t)r->nsass), *pc = PyList_New((Py_ssize_t)r->npc);
    if (!sass || !pc) goto fail;
    for (size_t i = 0; i < r->nsass; i++) {
        const SassRow *s = &r->sass[i];
        PyObject *t = Py_BuildValue("(KsKKK)", (unsigned long long)s->crc, s->function, (unsigned long long)s->pc,
                                    (unsigned long long)s->inst, (unsigned long long)s->thread_inst);
        if (!t) goto fail;
        PyList_SET_ITEM(sass, (Py_ssize_t)i, t);
    }
    for (size_t i = 0; i < r->npc; i++) {
        const PcRow *p = &r->pc[i];
        PyObject *t = Py_BuildValue("(KsKsK)", (unsigned long long)p->crc, p->function, (unsigned long long)p->pc,
                                    p->reason, (unsigned long long)p->samples);
        if (!t) goto fail;
        PyList_SET_ITEM(pc, (Py_ssize_t)i, t);
    }
    return Py_BuildValue("{sNsNsKsKsKsKsOsOsNsNsN}", "sass", sass, "pc", pc, "pc_samples",
                         (unsigned long long)r->pc_samples, "pc_dropped", (unsigned long long)r->pc_dropped,
                         "pc_non_user", (unsigned long long)r->pc_non_user, "sass_dropped",
                         (unsigned long long)r->sass_dropped, "pc_buffer_full", r->pc_buffer_full ? Py_True : Py_False,
                         "kernels_serial", r->kernels_serial ? Py_True : Py_False,
                         "sass_error", str_or_none(r->sass_error), "pc_error", str_or_none(r->pc_error), "sync_error",
                         str_or_none(r->sync_error));
fail:
    Py_XDECREF(sass);
    Py_XDECREF(pc);
    return NULL;
}

/* Run one of deep.c's collectors without the GIL, then hand its rows to Python. */
static PyObject *collect(void (*collector)(DeepResult *)) {
    DeepResult r;
    Py_BEGIN_ALLOW_THREADS collector(&r);
    Py_END_ALLOW_THREADS PyObject *d = result_dict(&r);
    deep_result_free(&r);
    return d;
}

/* deep_end() -> the range's rows and totals (waits for the context's work first) */
static PyObject *py_deep_end(PyObject *self, PyObject *unused) { return collect(deep_end); }

/* deep_teardown() -> what CUPTI still held at shutdown, as deep_end's result */
static PyObject *py_deep_teardown(PyObject *self, PyObject *unused) { return collect(deep_teardown); }

/* deep_source(crc, function, pc) -> (file, dir, line) or None */
static PyObject *py_deep_source(PyObject *self, PyObject *args) {
    unsigned long long crc, pc;
    const char *fn;
    if (!PyArg_ParseTuple(args, "KsK", &crc, &fn, &pc)) return NULL;
    char *file = NULL, *dir = NULL;
    uint32_t line = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = deep_source_line(crc, fn, pc, &file, &dir, &line);
    Py_END_ALLOW_THREADS PyObject *out = rc ? (Py_INCREF(Py_None), Py_None)
                                            : Py_BuildValue("(NNI)", str_or_none(file), str_or_none(dir), line);
    free(file);
    free(dir);
    return out;
}

static PyObject *py_deep_state(PyObject *self, PyObject *unused) {
    return Py_BuildValue("{sisisisisK}", "ready", g_deep.ready, "sass", g_deep.sass_on, "pc", g_deep.pc_on, "in_range",
                         g_deep.in_range, "cubins_skipped", (unsigned long long)g_deep.cubins_skipped);
}

PyMethodDef DEEP_METHODS[] = {
    {"deep_watch", py_deep_watch, METH_VARARGS, "deep_watch(cubin_budget) -> None or why module cubins are not kept"},
    {"deep_prepare_sass", py_deep_prepare_sass, METH_NOARGS, "None, or why the SASS metrics cannot run with this libcupti"},
    {"deep_setup", py_deep_setup, METH_VARARGS, "deep_setup(sass, pc, period_log2, collect_pcs) -> (error, sass_error, pc_error, device, stall reasons)"},
    {"deep_begin", py_deep_begin, METH_NOARGS, "open a deep range -> (sass_error, pc_error)"},
    {"deep_end", py_deep_end, METH_NOARGS, "close the deep range -> its rows and totals"},
    {"deep_teardown", py_deep_teardown, METH_NOARGS, "disable the deep engines -> rows CUPTI still held"},
    {"deep_source", py_deep_source, METH_VARARGS, "deep_source(crc, function, pc) -> (file, dir, line) or None"},
    {"deep_state", py_deep_state, METH_NOARGS, "the deep engines' state"},
    {NULL}};
#endif

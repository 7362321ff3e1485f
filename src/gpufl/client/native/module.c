/* module.c — gpufl.client._native: the Python binding of the record path (load, attach, start/stop,
 * scopes, NVTX draining, counters). The Writer type is in py_writer.c, the test hooks in test_hooks.c.
 * Not in the injection build. */
#include "gpufl_native.h"

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

static PyObject *py_load(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
    const char *err = load_cupti(path);
    if (err) return PyErr_Format(PyExc_OSError, "%s", err);
    return PyLong_FromUnsignedLong(g_trace.version);
}

static PyObject *py_cupti_version(PyObject *self, PyObject *unused) { return PyLong_FromUnsignedLong(g_trace.version); }

static PyObject *py_timestamp(PyObject *self, PyObject *unused) {
    if (!g_trace.loaded) return PyErr_Format(PyExc_RuntimeError, "libcupti not loaded");
    uint64_t ts = 0;
    CUptiResult r = p_cuptiGetTimestamp(&ts);
    if (r != CUPTI_SUCCESS) return PyErr_Format(PyExc_RuntimeError, "cuptiGetTimestamp: %s", cupti_err(r));
    return PyLong_FromUnsignedLongLong(ts);
}

static int set_limits(PyObject *limits) {
    memset(g_trace.lim, 0, sizeof g_trace.lim);
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
        if (dev >= 0 && dev < MAX_DEVICES) g_trace.lim[dev] = l;
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
    old = g_trace.w;
    g_trace.w = (Writer *)w;
    pthread_mutex_unlock(&g_writer_mu);
    Py_END_ALLOW_THREADS Py_XDECREF(old);
    g_trace.offset_ns = offset;
    g_trace.stacks = stacks;
    Py_RETURN_NONE;
}


/* start(buffer_bytes, flush_period_ms, **options) -> launch callbacks enabled (-1: switched off).
 * The keyword options are NativeOptions' diagnostics (gpufl.client.config.NativeDiagnostics fills them). */
static PyObject *py_start(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buffer_bytes", "flush_period_ms", "subscribe", "callbacks", "runtime", "driver",
                             "activity", "nvtx", "serial_kernels", "copies", "discard", "host_pinned",
                             "device_buffer_mb", "dump_dir", "syncs", "nvtx_domains", "nvtx_lazy_domains", NULL};
    NativeOptions o = g_opts;
    options_defaults(&o);
    unsigned long long bufbytes;
    const char *dump = NULL, *domains = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "KI|$ppppppppppIzpzp", kwlist, &bufbytes, &o.flush_period_ms,
                                     &o.subscribe, &o.callbacks, &o.runtime_domain, &o.driver_domain,
                                     &o.activity, &o.nvtx, &o.serial_kernels, &o.copies, &o.discard,
                                     &o.host_pinned, &o.device_buffer_mb, &dump, &o.syncs, &domains,
                                     &o.nvtx_lazy_domains))
        return NULL;
    snprintf(o.nvtx_domains, sizeof o.nvtx_domains, "%s", domains ? domains : "");
    if (!g_trace.loaded || !g_trace.w) return PyErr_Format(PyExc_RuntimeError, "load() and attach() first");
    if (g_trace.active) return PyLong_FromLong(0);
    o.buffer_bytes = (size_t)bufbytes;
    snprintf(o.dump_dir, sizeof o.dump_dir, "%s", dump ? dump : "");
    o.buffer_diagnostics = o.discard || o.dump_dir[0];
    g_opts = o; /* not active: no CUPTI callback reads it now */
    int enabled = 0;
    const char *err = start_tracing(&enabled);
    if (err) return PyErr_Format(PyExc_RuntimeError, "%s", err);
    return PyLong_FromLong(enabled);
}

/* finalize() -> error text ("" on success): cuptiFinalize, detaching every subscriber (gpufl.client.engines.handover
 * calls it at interpreter exit when torch.profiler's Kineto kept CUPTI). */
static PyObject *py_finalize(PyObject *self, PyObject *unused) {
    if (!g_trace.loaded || g_trace.active) return PyUnicode_FromString(g_trace.loaded ? "tracing is active" : "not loaded");
    CUptiResult r;
    Py_BEGIN_ALLOW_THREADS r = p_cuptiFinalize();
    Py_END_ALLOW_THREADS return PyUnicode_FromString(r == CUPTI_SUCCESS ? "" : cupti_err(r));
}

/* stop(finalize=True) -> (flush error, finalize error); without the GIL (CUPTI may call back into us). */
static PyObject *py_stop(PyObject *self, PyObject *args) {
    int finalize = 1;
    if (!PyArg_ParseTuple(args, "|p", &finalize)) return NULL;
    if (!g_trace.active) Py_RETURN_NONE;
    CUptiResult fr = CUPTI_SUCCESS, zr = CUPTI_SUCCESS;
    Py_BEGIN_ALLOW_THREADS stop_tracing(&fr, &zr, finalize);
    Py_END_ALLOW_THREADS return Py_BuildValue("(ss)", fr == CUPTI_SUCCESS ? "" : cupti_err(fr),
                                              zr == CUPTI_SUCCESS ? "" : cupti_err(zr));
}

static PyObject *py_stats(PyObject *self, PyObject *unused) {
    size_t nst = stacks_count();
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsnsnsKsnsK}", "buffers", (unsigned long long)g_trace.buffers, "kernels",
                         (unsigned long long)g_trace.kernels, "memcpys", (unsigned long long)g_trace.memcpys,
                         "memsets", (unsigned long long)g_trace.memsets, "matched",
                         (unsigned long long)g_trace.matched, "unmatched", (unsigned long long)g_trace.unmatched,
                         "launch_callbacks", (unsigned long long)g_trace.launches_cb, "cupti_dropped",
                         (unsigned long long)g_trace.cupti_dropped, "stacks", (Py_ssize_t)nst, "launch_configs",
                         (Py_ssize_t)g_trace.nconfigs, "foreign_buffers", (unsigned long long)g_trace.foreign_buffers,
                         "buffers_outstanding", (Py_ssize_t)owned_count(), "untimed",
                         (unsigned long long)g_trace.untimed);
}

/* configure(callbacks, activity, runtime=False, driver=True, empty=False): switch the launch callbacks /
 * activity records on or off while tracing (diagnostics: bench/native_attribution.py measures each part's
 * cost inside one process). */
static PyObject *py_configure(PyObject *self, PyObject *args) {
    int cb, act, runtime = 0, driver = 1, empty = 0; /* defaults: what start() enables */
    if (!PyArg_ParseTuple(args, "pp|ppp", &cb, &act, &runtime, &driver, &empty)) return NULL;
    if (!g_trace.active) return PyErr_Format(PyExc_RuntimeError, "tracing is not active");
    if (!g_trace.subscribed) return PyErr_Format(PyExc_RuntimeError, "no CUPTI subscriber (GPUFL_NATIVE_SUBSCRIBE=0)");
    g_opts.empty_callback = empty;
    Py_BEGIN_ALLOW_THREADS enable_launch_callbacks(cb, runtime, driver);
    enable_activity(act);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* capture(on) -> whether CUPTI was switched: a capture window opens (True) or closes (gpufl.client.capture). While
 * tracing is active the callbacks and activity kinds go on or off now (capture_switch, without the GIL: CUPTI
 * may deliver a buffer meanwhile); while not (before start, stepped aside for torch.profiler) the state is kept
 * and start() honours it. */
static PyObject *py_capture(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    g_trace.capture_off = !on;
    g_trace.capture_switches++;
    if (!g_trace.active) Py_RETURN_FALSE;
    Py_BEGIN_ALLOW_THREADS capture_switch(on);
    Py_END_ALLOW_THREADS g_trace.capture_applied++;
    Py_RETURN_TRUE;
}

/* capture_state() -> (capturing, switches asked for, switches that reached CUPTI) */
static PyObject *py_capture_state(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(OKK)", g_trace.capture_off ? Py_False : Py_True,
                         (unsigned long long)g_trace.capture_switches, (unsigned long long)g_trace.capture_applied);
}

/* nvtx_domain_counts() -> [(domain, ranges, partial), ...]: the NVTX ranges of domains not made into scopes;
 * partial: some were not seen (lazy domains: their callbacks were off) */
static PyObject *py_nvtx_domain_counts(PyObject *self, PyObject *unused) {
    NvtxDomainCount c[64];
    size_t n = nvtx_domain_counts(c, sizeof c / sizeof *c);
    PyObject *out = PyList_New((Py_ssize_t)n);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(sKO)", c[i].name, (unsigned long long)c[i].skipped,
                                    c[i].partial ? Py_True : Py_False);
        if (!t) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    return out;
}

/* drain_nvtx() -> ([(kind, thread, inst, parent, ts_ns, name), ...], dropped) */
static PyObject *py_drain_nvtx(PyObject *self, PyObject *unused) {
    /* here, off CUPTI's callbacks (and without the GIL, as capture_switch): a recorded domain created since
     * wants its ranges */
    Py_BEGIN_ALLOW_THREADS nvtx_apply_lazy_domains();
    Py_END_ALLOW_THREADS
    NvtxEvent *ev;
    uint64_t dropped;
    size_t n = nvtx_take(&ev, &dropped);
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
    old = g_trace.w;
    g_trace.w = NULL;
    pthread_mutex_unlock(&g_writer_mu);
    Py_END_ALLOW_THREADS Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* reset(): forget launch configurations, stacks, sites and counters (between sessions, never while active). */
static PyObject *py_reset(PyObject *self, PyObject *unused) {
    if (g_trace.active) return PyErr_Format(PyExc_RuntimeError, "tracing is active");
    configs_reset();
    stacks_reset();
    if (g_trace.sites) memset(g_trace.sites, 0, ((size_t)SITE_MASK + 1) * sizeof(Site));
    g_trace.buffers = g_trace.kernels = g_trace.memcpys = g_trace.memsets = g_trace.matched = g_trace.unmatched = g_trace.launches_cb = 0;
    g_trace.cupti_dropped = g_trace.foreign_buffers = g_trace.untimed = 0;
    g_trace.capture_off = 0; /* a new session traces until its capture mode says otherwise */
    g_trace.capture_switches = g_trace.capture_applied = 0;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"load", py_load, METH_VARARGS, "load(libcupti_path) -> cuptiGetVersion()"},
    {"timestamp", py_timestamp, METH_NOARGS, "cuptiGetTimestamp()"},
    {"cupti_version", py_cupti_version, METH_NOARGS, "cuptiGetVersion() of the loaded libcupti"},
    {"attach", py_attach, METH_VARARGS, "attach(writer, device_limits, offset_ns, stacks)"},
    {"start", (PyCFunction)(void (*)(void))py_start, METH_VARARGS | METH_KEYWORDS,
     "start(buffer_bytes, flush_period_ms, **options) -> launch callbacks enabled"},
    {"stop", py_stop, METH_VARARGS, "stop(finalize=True) -> (flush error, finalize error)"},
    {"finalize", py_finalize, METH_NOARGS, "cuptiFinalize() while not tracing -> error text"},
    {"detach", py_detach, METH_NOARGS, "forget the writer"},
    {"configure", py_configure, METH_VARARGS,
     "configure(callbacks, activity, runtime=False, driver=True, empty=False) while tracing (diagnostics)"},
    {"capture", py_capture, METH_O, "capture(on): a capture window opens or closes -> CUPTI switched now"},
    {"capture_state", py_capture_state, METH_NOARGS, "(capturing, switches, switches applied to CUPTI)"},
    {"drain_nvtx", py_drain_nvtx, METH_NOARGS, "NVTX range/thread-name events since the last call"},
    {"nvtx_domain_counts", py_nvtx_domain_counts, METH_NOARGS, "NVTX ranges of the domains left out, per domain"},
    {"reset", py_reset, METH_NOARGS, "forget launch configurations, stacks, sites, counters"},
    {"stats", py_stats, METH_NOARGS, "counters"},
    {"scope_enter", py_scope_enter, METH_O, "scope_enter(inst) on the entering thread"},
    {"scope_exit", py_scope_exit, METH_O, "scope_exit(inst) on the exiting thread"},
    {"replay_buffer", py_replay_buffer, METH_VARARGS, "parse a recorded raw CUPTI activity buffer"},
    {"request_buffer", py_request_buffer, METH_NOARGS, "CUPTI's buffer-requested callback (tests)"},
    {"complete_buffer", py_complete_buffer, METH_VARARGS, "CUPTI's buffer-completed callback (tests)"},
    {"record_launch", py_record_launch, METH_VARARGS, "store a launch site as the callback would"},
    {"nvtx_call", py_nvtx_call, METH_VARARGS, "nvtx_call(cbid, message, range_id, domain=0, registered=0): an NVTX callback, as CUPTI delivers it"},
    {"nvtx_domains", py_nvtx_domains, METH_VARARGS, "nvtx_domains(spec, lazy=False): which NVTX domains become scopes (tests)"},
    {"nvtx_ranges_wanted", py_nvtx_ranges_wanted, METH_NOARGS, "the named domains' range callbacks wanted (tests)"},
    {"nvtx_ranges_off", py_nvtx_ranges_off, METH_NOARGS, "as cupti.c says when they are off (tests)"},
    {NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "gpufl.client._native",
                                       "The native record path (CUPTI in C).", -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&WriterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (PyModule_AddFunctions(m, CAPTURE_HOOKS)) return NULL;
    Py_INCREF(&WriterType);
    PyModule_AddObject(m, "Writer", (PyObject *)&WriterType);
    if (PyModule_AddFunctions(m, DEEP_METHODS) < 0) return NULL;
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
                      {"NVTX_NAME_OS_THREAD_A", CUPTI_CBID_NVTX_nvtxNameOsThreadA},
                      {"NVTX_DOMAIN_RANGE_PUSH_EX", CUPTI_CBID_NVTX_nvtxDomainRangePushEx},
                      {"NVTX_DOMAIN_RANGE_POP", CUPTI_CBID_NVTX_nvtxDomainRangePop},
                      {"NVTX_DOMAIN_CREATE_A", CUPTI_CBID_NVTX_nvtxDomainCreateA},
                      {"NVTX_DOMAIN_REGISTER_STRING_A", CUPTI_CBID_NVTX_nvtxDomainRegisterStringA}};
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

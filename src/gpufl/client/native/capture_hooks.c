/* capture_hooks.c — the injection build's capture controller (capture_modes.c, control_file.c) driven from
 * tests without a GPU and without injecting into a program: the extension compiles the same C, and these
 * functions (prefixed cap_, in gpufl.client._native) run it on a test's clock, with a real Writer, so that
 * tests/client/test_capture_native.py checks its records against the contract and its rules against
 * gpufl.client.capture's. Not in the injection build. */
#include "gpufl_native.h"

#ifndef GPUFL_INJECTION
static PyObject *g_writer;    /* the Writer the controller writes to, held until cap_shutdown */
static int64_t g_test_now;    /* the test's clock; 0: the real one */

static int64_t test_clock(void) { return g_test_now ? g_test_now : realtime_ns(); }

static PyObject *outcome(CapOutcome r) {
    if (r == CAP_NONE) Py_RETURN_NONE;
    return PyUnicode_FromString(CAP_OUTCOMES[r]);
}

/* cap_parse(text) -> (mode, on_ns, period_ns, first_step, last_step, text); ValueError says why not */
static PyObject *h_parse(PyObject *self, PyObject *arg) {
    const char *text = PyUnicode_AsUTF8(arg);
    if (!text) return NULL;
    CapPlan p;
    char err[256];
    if (cap_parse(text, &p, err, sizeof err)) return PyErr_Format(PyExc_ValueError, "%s", err);
    return Py_BuildValue("(sLLLLs)", CAP_MODES[p.mode], (long long)p.on_ns, (long long)p.period_ns,
                         (long long)p.first_step, (long long)p.last_step, p.text);
}

/* cap_control_parse(bytes) -> {key: value} of what was read (session_ids: whether it names "me"; engines:
 * the CAP_E_* bits); ValueError says why not */
static PyObject *h_control_parse(PyObject *self, PyObject *arg) {
    char *s;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &s, &n)) return NULL;
    ControlRequest r;
    char err[128];
    if (control_parse(s, (size_t)n, &r, "me", err, sizeof err)) return PyErr_Format(PyExc_ValueError, "%s", err);
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    PyObject *v = PyUnicode_DecodeUTF8(r.id, (Py_ssize_t)strlen(r.id), "strict");
    int bad = !v || PyDict_SetItemString(d, "id", v);
    Py_XDECREF(v);
#define PUT(cond, key, make)                                  \
    if (!bad && (cond)) {                                     \
        v = make;                                             \
        bad = !v || PyDict_SetItemString(d, key, v);          \
        Py_XDECREF(v);                                        \
    }
    PUT(r.has_requester, "requester", PyUnicode_DecodeUTF8(r.requester, (Py_ssize_t)strlen(r.requester), "strict"))
    PUT(r.has_session && r.session_is_string, "session_id",
        PyUnicode_DecodeUTF8(r.session_id, (Py_ssize_t)strlen(r.session_id), "strict"))
    PUT(r.has_session && !r.session_is_string, "session_id", (Py_INCREF(Py_False), Py_False))
    PUT(r.has_seconds, "seconds", PyFloat_FromDouble(r.seconds))
    PUT(r.has_steps, "steps", PyFloat_FromDouble(r.steps))
    PUT(r.has_session_ids, "session_ids_name_me", PyBool_FromLong(r.names_me))
    PUT(r.engines, "engines", PyLong_FromUnsignedLong(r.engines))
#undef PUT
    if (bad) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* cap_begin(writer, mode, session_id, log_dir, default_seconds, now_ns=0): the controller over a started
 * Writer; now_ns > 0: the test's clock from there (cap_clock moves it), 0: the real clock. -> begun */
static PyObject *h_begin(PyObject *self, PyObject *args) {
    PyObject *w;
    const char *mode, *sid, *log_dir;
    double dflt;
    long long now = 0;
    if (!PyArg_ParseTuple(args, "O!sszd|L", &WriterType, &w, &mode, &sid, &log_dir, &dflt, &now)) return NULL;
    CapPlan p;
    char err[256];
    if (cap_parse(mode, &p, err, sizeof err)) return PyErr_Format(PyExc_ValueError, "%s", err);
    if (g_writer) return PyErr_Format(PyExc_RuntimeError, "cap_shutdown() the last controller first");
    g_test_now = now;
    if (cap_begin(&p, (Writer *)w, sid, log_dir, dflt, test_clock)) Py_RETURN_FALSE;
    Py_INCREF(w);
    g_writer = w;
    Py_RETURN_TRUE;
}

static PyObject *h_clock(PyObject *self, PyObject *arg) {
    long long now = PyLong_AsLongLong(arg);
    if (now == -1 && PyErr_Occurred()) return NULL;
    g_test_now = now;
    Py_RETURN_NONE;
}

/* cap_start(thread): the first window of the mode; thread: the background thread and SIGUSR2 too */
static PyObject *h_start(PyObject *self, PyObject *arg) {
    int thread = PyObject_IsTrue(arg), r;
    if (thread < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS r = cap_start(thread);
    Py_END_ALLOW_THREADS if (r) return PyErr_Format(PyExc_RuntimeError, "cap_start failed");
    Py_RETURN_NONE;
}

/* cap_request(kind, seconds=0, requester=None, request_id=None) -> opened | extended | refused | continuous */
static PyObject *h_request(PyObject *self, PyObject *args) {
    const char *kind, *requester = NULL, *rid = NULL;
    double seconds = 0;
    if (!PyArg_ParseTuple(args, "s|dzz", &kind, &seconds, &requester, &rid)) return NULL;
    /* the triggers a program without Python has; the window keeps the pointer: a static string */
    if (!strcmp(kind, "signal")) kind = "signal";
    else if (!strcmp(kind, "control_file")) kind = "control_file";
    else return PyErr_Format(PyExc_ValueError, "kind: signal or control_file (the schedule opens its own)");
    CapOutcome r;
    Py_BEGIN_ALLOW_THREADS r = cap_request(kind, seconds, requester, rid);
    Py_END_ALLOW_THREADS return outcome(r);
}

static PyObject *h_tick(PyObject *self, PyObject *unused) {
    int64_t wait;
    Py_BEGIN_ALLOW_THREADS wait = cap_tick();
    Py_END_ALLOW_THREADS return PyLong_FromLongLong((long long)wait);
}

static PyObject *h_poll(PyObject *self, PyObject *unused) {
    CapOutcome r;
    Py_BEGIN_ALLOW_THREADS r = cap_poll_control();
    Py_END_ALLOW_THREADS return outcome(r);
}

static PyObject *h_stop(PyObject *self, PyObject *unused) {
    int r;
    Py_BEGIN_ALLOW_THREADS r = cap_stop();
    Py_END_ALLOW_THREADS return PyBool_FromLong(r);
}

static PyObject *h_shutdown(PyObject *self, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS cap_shutdown();
    Py_END_ALLOW_THREADS Py_CLEAR(g_writer);
    g_test_now = 0;
    Py_RETURN_NONE;
}

/* cap_state() -> (window open, windows written, notices written, the open window's deadline or 0) */
static PyObject *h_state(PyObject *self, PyObject *unused) {
    int open;
    uint64_t windows, notices;
    int64_t deadline;
    cap_state(&open, &windows, &notices, &deadline);
    return Py_BuildValue("(OKKL)", open ? Py_True : Py_False, (unsigned long long)windows,
                         (unsigned long long)notices, (long long)deadline);
}

PyMethodDef CAPTURE_HOOKS[] = {
    {"cap_parse", h_parse, METH_O, "the injection build's GPUFL_CAPTURE parser (tests)"},
    {"cap_control_parse", h_control_parse, METH_O, "its control-file parser (tests)"},
    {"cap_begin", h_begin, METH_VARARGS, "cap_begin(writer, mode, session_id, log_dir, default_seconds, now_ns=0)"},
    {"cap_clock", h_clock, METH_O, "cap_clock(now_ns): move the test clock"},
    {"cap_start", h_start, METH_O, "cap_start(thread): the mode's first window (and the thread, SIGUSR2)"},
    {"cap_request", h_request, METH_VARARGS, "cap_request(kind, seconds=0, requester=None, request_id=None)"},
    {"cap_tick", h_tick, METH_NOARGS, "the schedule and deadlines -> ns until the next thing due"},
    {"cap_poll", h_poll, METH_NOARGS, "read the control file if it changed -> outcome or None"},
    {"cap_stop", h_stop, METH_NOARGS, "close the open window -> whether one was open"},
    {"cap_shutdown", h_shutdown, METH_NOARGS, "close the open window (shutdown), end the thread"},
    {"cap_state", h_state, METH_NOARGS, "(open, windows written, notices written, deadline)"},
    {NULL}};
#endif /* !GPUFL_INJECTION */

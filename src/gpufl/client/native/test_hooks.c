/* test_hooks.c — CUPTI's side of the record path, driven from tests without a GPU: raw activity buffers
 * recorded on an H100 replayed through the same parser, launch sites stored as the launch callback would,
 * NVTX callbacks delivered as CUPTI would, and the two buffer callbacks in the order CUPTI calls them across
 * a hand-over. Part of the extension's API (tests/client/test_native.py), not of the injection build. */
#include "gpufl_native.h"

#ifndef GPUFL_INJECTION
/* replay_buffer(bytes, names): parse a recorded raw activity buffer as if CUPTI had delivered it (tests).
 * `names` maps the kernel-name pointers recorded in the buffer to the names (they pointed into CUPTI's
 * memory in the recording process); a kernel whose pointer is missing is refused. */
PyObject *py_replay_buffer(PyObject *self, PyObject *args) {
    Py_buffer b;
    PyObject *names;
    if (!PyArg_ParseTuple(args, "y*O!", &b, &PyDict_Type, &names)) return NULL;
    if (!g_trace.loaded || !g_trace.w) {
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
PyObject *py_record_launch(PyObject *self, PyObject *args) {
    unsigned int corr;
    unsigned long long enter, dur;
    if (!PyArg_ParseTuple(args, "IKK", &corr, &enter, &dur)) return NULL;
    if (alloc_sites()) return PyErr_NoMemory();
    Site *s = &g_trace.sites[corr & SITE_MASK];
    atomic_store(&s->corr, 0);
    s->thread = thread_id();
    s->scope = current_scope();
    Py_BEGIN_ALLOW_THREADS s->stack = g_trace.stacks ? capture_stack() : 0;
    Py_END_ALLOW_THREADS s->enter = enter;
    s->dur = dur;
    atomic_store(&s->corr, corr);
    Py_RETURN_NONE;
}

/* nvtx_call(cbid, message, range_id, domain=0, registered=0): deliver an NVTX callback as CUPTI would (tests
 * without a GPU). range_id is nvtxRangeStart*'s return value or nvtxRangeEnd's argument; domain is the
 * domain handle of a Domain* call, and what nvtxDomainCreateA returns; registered is the string handle
 * nvtxDomainRegisterStringA returns, and makes an *Ex call's message that registered string (a NULL
 * message on an *Ex call: attributes without a message). */
PyObject *py_nvtx_call(PyObject *self, PyObject *args) {
    unsigned int cbid;
    const char *msg;
    unsigned long long id, dom = 0, reg = 0;
    if (!PyArg_ParseTuple(args, "IzK|KK", &cbid, &msg, &id, &dom, &reg)) return NULL;
    nvtxDomainHandle_t domain = (nvtxDomainHandle_t)(uintptr_t)dom;
    nvtxStringHandle_t registered = (nvtxStringHandle_t)(uintptr_t)reg;
    nvtxEventAttributes_t attr = {0};
    attr.version = NVTX_VERSION;
    attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    if (registered) {
        attr.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
        attr.message.registered = registered;
    } else if (msg) {
        attr.messageType = NVTX_MESSAGE_TYPE_ASCII;
        attr.message.ascii = msg;
    }
    nvtxRangeId_t ret = id;
    union {
        nvtxRangePushA_params push;
        nvtxRangePushEx_params pushex;
        nvtxDomainRangePushEx_params dpushex;
        nvtxRangeStartA_params start;
        nvtxRangeStartEx_params startex;
        nvtxDomainRangeStartEx_params dstartex;
        nvtxRangeEnd_params end;
        nvtxDomainRangeEnd_params dend;
        nvtxDomainRangePop_params dpop;
        nvtxNameOsThreadA_params thread;
        nvtxDomainCreateA_params dcreate;
        nvtxDomainRegisterStringA_params dreg;
    } p;
    memset(&p, 0, sizeof p);
    void *retval = &ret;
    switch (cbid) {
        case CUPTI_CBID_NVTX_nvtxRangePushA: p.push.message = msg; break;
        case CUPTI_CBID_NVTX_nvtxRangePushEx: p.pushex.eventAttrib = &attr; break;
        case CUPTI_CBID_NVTX_nvtxDomainRangePushEx: p.dpushex.domain = domain; p.dpushex.core.eventAttrib = &attr; break;
        case CUPTI_CBID_NVTX_nvtxRangeStartA: p.start.message = msg; break;
        case CUPTI_CBID_NVTX_nvtxRangeStartEx: p.startex.eventAttrib = &attr; break;
        case CUPTI_CBID_NVTX_nvtxDomainRangeStartEx: p.dstartex.domain = domain; p.dstartex.core.eventAttrib = &attr; break;
        case CUPTI_CBID_NVTX_nvtxRangeEnd: p.end.id = id; break;
        case CUPTI_CBID_NVTX_nvtxDomainRangeEnd: p.dend.domain = domain; p.dend.core.id = id; break;
        case CUPTI_CBID_NVTX_nvtxDomainRangePop: p.dpop.domain = domain; break;
        case CUPTI_CBID_NVTX_nvtxNameOsThreadA: p.thread.threadId = (uint32_t)id; p.thread.name = msg; break;
        case CUPTI_CBID_NVTX_nvtxDomainCreateA: p.dcreate.name = msg; retval = &domain; break;
        case CUPTI_CBID_NVTX_nvtxDomainRegisterStringA: p.dreg.domain = domain; p.dreg.string = msg; retval = &registered; break;
        default: break;
    }
    CUpti_NvtxData d = {.functionName = "", .functionParams = &p, .functionReturnValue = retval};
    on_nvtx(cbid, &d);
    Py_RETURN_NONE;
}

/* nvtx_domains(spec, lazy=False) -> whether the named domains' range callbacks are wanted now: which NVTX
 * domains become scopes, as start() would set it (GPUFL_NVTX_DOMAINS), and whether domains are lazy there. */
PyObject *py_nvtx_domains(PyObject *self, PyObject *args) {
    const char *spec;
    int lazy = 0;
    if (!PyArg_ParseTuple(args, "s|p", &spec, &lazy)) return NULL;
    nvtx_domains_configure(spec, lazy);
    return PyBool_FromLong(nvtx_domain_ranges_wanted());
}

/* nvtx_ranges_wanted() -> bool, and nvtx_ranges_off(): the lazy-domain state (tests; cupti.c switches it). */
PyObject *py_nvtx_ranges_wanted(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(nvtx_domain_ranges_wanted());
}

PyObject *py_nvtx_ranges_off(PyObject *self, PyObject *unused) {
    nvtx_domain_ranges_switched(0);
    Py_RETURN_NONE;
}

/* request_buffer() -> address; complete_buffer(address, valid): CUPTI's two buffer callbacks, driven by the
 * no-GPU tests in the order CUPTI calls them across a hand-over (complete_buffer with an address we did not
 * hand out is what CUPTI does when another client's buffer reaches our callback). */
PyObject *py_request_buffer(PyObject *self, PyObject *unused) {
    uint8_t *buf = NULL;
    size_t size = 0, maxrec = 0;
    buffer_requested(&buf, &size, &maxrec);
    if (!buf) return PyErr_NoMemory();
    memset(buf, 0, size);
    return PyLong_FromVoidPtr(buf);
}

PyObject *py_complete_buffer(PyObject *self, PyObject *args) {
    PyObject *addr;
    unsigned long long valid;
    if (!PyArg_ParseTuple(args, "OK", &addr, &valid)) return NULL;
    void *p = PyLong_AsVoidPtr(addr);
    if (!p && PyErr_Occurred()) return NULL;
    Py_BEGIN_ALLOW_THREADS buffer_completed(NULL, 0, (uint8_t *)p, 0, (size_t)valid);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

#endif /* !GPUFL_INJECTION */

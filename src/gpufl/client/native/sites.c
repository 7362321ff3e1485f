/* sites.c — the launch callback and what it records per launch (the launch site: thread, API enter time
 * and duration, open scope, and with option `stacks` the interned Python call stack, read from CPython's
 * frames without the GIL). This is the hot path on the user's launching thread: nothing here may allocate
 * per launch except the first time a stack is seen. */
#include "gpufl_native.h"

#if GPUFL_FRAMES
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include <internal/pycore_frame.h>
#endif

GPUFL_TLS uint32_t tls_tid;

int alloc_sites(void) {
    if (g_trace.sites) return 0;
    g_trace.sites = calloc((size_t)SITE_MASK + 1, sizeof(Site));
    return g_trace.sites ? 0 : -1;
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
uint32_t capture_stack(void) {
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
uint32_t capture_stack(void) { return 0; }
#endif

/* Move stacks first seen by launching threads into the writer's dictionary (buffer thread, writer locked). */
void sync_stacks_locked(Writer *w) {
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
        size_t seq_at = w_begin_dict_line(w, &line);
        SB_LIT(&line, ",\"kind\":\"stack\",\"id\":");
        sb_u64(&line, id);
        sb_put(&line, body, bn);
        SB_LIT(&line, "}");
        w_set_dict_locked(w, DK_STACK, id, line.p, line.n, seq_at);
    }
    free(line.p);
    free(list.p);
}


size_t stacks_count(void) {
    pthread_mutex_lock(&g_stack_mu);
    size_t n = g_nstacks;
    pthread_mutex_unlock(&g_stack_mu);
    return n;
}

/* Forget every stack (between sessions, never while tracing). */
void stacks_reset(void) {
    pthread_mutex_lock(&g_stack_mu);
    for (size_t i = 0; i < g_stack_slots; i++) free(g_stacks[i].frames);
    free(g_stacks);
    g_stacks = NULL;
    g_stack_slots = g_nstacks = 0;
    free(g_new_stacks.p);
    memset(&g_new_stacks, 0, sizeof g_new_stacks);
    pthread_mutex_unlock(&g_stack_mu);
}

/* ------------------------------------------------------------------------------------------------ launch callback */

static __thread int tls_runtime_depth;
_Atomic(CUcontext) g_launch_ctx;

void CUPTIAPI on_api(void *ud, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *cbdata) {
    if (domain == CUPTI_CB_DOMAIN_NVTX) {
        on_nvtx(cbid, (const CUpti_NvtxData *)cbdata);
        return;
    }
#ifndef GPUFL_INJECTION
    if (domain == CUPTI_CB_DOMAIN_RESOURCE) { /* module loads, enabled only while a deep engine is on */
        deep_on_resource(cbid, cbdata);
        return;
    }
#endif
    if (g_opts.empty_callback) return; /* diagnostics: CUPTI's own callback cost */
    const CUpti_CallbackData *d = (const CUpti_CallbackData *)cbdata;
    int enter = d->callbackSite == CUPTI_API_ENTER;
    if (domain == CUPTI_CB_DOMAIN_RUNTIME_API) {
        if (!enter) tls_runtime_depth--;
    } else if (tls_runtime_depth > 0) {
        return; /* a driver call made by a runtime call we already saw: its kernel carries the runtime id */
    }
    uint32_t corr = d->correlationId;
    Site *s = &g_trace.sites[corr & SITE_MASK];
#ifdef GPUFL_INJECTION
    static _Atomic int limits_done;
    if (enter && !atomic_exchange(&limits_done, 1)) query_device_limits(); /* CUDA is up by the first launch */
#endif
    if (enter) {
        if (domain == CUPTI_CB_DOMAIN_RUNTIME_API) tls_runtime_depth++;
        /* read first: a store only when it changes, so threads launching on one context share the line */
        if (d->context && atomic_load_explicit(&g_launch_ctx, memory_order_relaxed) != d->context)
            atomic_store_explicit(&g_launch_ctx, d->context, memory_order_relaxed);
        /* CLOCK_REALTIME (a vDSO read, no call into libcupti) on the user's thread; the kernel's GPU time is
         * mapped onto the same clock with the measured offset. */
        uint64_t now = (uint64_t)realtime_ns();
        atomic_store_explicit(&s->corr, 0, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        s->thread = thread_id();
        s->scope = current_scope();
        s->stack = g_trace.stacks ? capture_stack() : 0;
        s->enter = now;
        s->dur = 0;
        atomic_store_explicit(&s->corr, corr, memory_order_release);
        if (d->correlationData) *d->correlationData = now;
        atomic_fetch_add_explicit(&g_trace.launches_cb, 1, memory_order_relaxed);
    } else if (atomic_load_explicit(&s->corr, memory_order_acquire) == corr) {
        s->dur = (uint64_t)realtime_ns() - s->enter;
    }
}

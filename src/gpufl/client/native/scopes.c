/* scopes.c — which scope a launch belongs to: per-thread stacks of open scopes (gpufl.scope, through the
 * extension's scope_enter/exit) and NVTX ranges, which CUPTI's NVTX callbacks turn into scopes. */
#include "gpufl_native.h"

GPUFL_TLS uint64_t tls_scopes[MAX_SCOPE_DEPTH];
GPUFL_TLS int tls_scope_depth;
static pthread_mutex_t g_scope_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *g_open;
static size_t g_nopen, g_capopen;
_Atomic uint64_t g_last_open;

void scope_push(uint64_t inst) {
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

/* The process-wide list of open scopes forgets `inst` (current_scope's fallback for threads without one). */
static void forget_open(uint64_t inst) {
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

void scope_pop(uint64_t inst) {
    /* pop this thread's innermost entry with that id (scopes exit in order on a thread) */
    for (int i = (tls_scope_depth < MAX_SCOPE_DEPTH ? tls_scope_depth : MAX_SCOPE_DEPTH) - 1; i >= 0; i--) {
        if (tls_scopes[i] == inst) {
            tls_scope_depth = i;
            break;
        }
    }
    forget_open(inst);
}

/* An NVTX range closes: only its own entry leaves the thread's stack. NVTX keeps one stack per domain, so the
 * ranges above it may be another domain's, still open (truncating there re-parented them and the kernels
 * launched inside them). */
static void scope_pop_range(uint64_t inst) {
    int stored = tls_scope_depth < MAX_SCOPE_DEPTH ? tls_scope_depth : MAX_SCOPE_DEPTH;
    for (int i = stored - 1; i >= 0; i--) {
        if (tls_scopes[i] == inst) {
            /* deeper than MAX_SCOPE_DEPTH the entries were never stored: the last slot keeps a stale id */
            memmove(tls_scopes + i, tls_scopes + i + 1, (size_t)(stored - i - 1) * sizeof *tls_scopes);
            tls_scope_depth--;
            break;
        }
    }
    forget_open(inst);
}

/* NVTX push/pop ranges become scopes (NVTX_INJECTION64_PATH names libcupti, so CUPTI sees NVTX calls): on the
 * calling thread they join the scope stack (kernels launched inside carry them); the begin/end events queue
 * here and the Python engine writes them to the scope stream. Instance ids start at 2^40, apart from
 * gpufl.scope's. A range's parent is the thread's innermost scope, else the scope entered last anywhere
 * (current_scope, as for kernels). A range without a readable message is "(unnamed NVTX range[, domain D])".
 * Start/end ranges (nvtxRangeStart*, nvtxRangeEnd) belong to no thread — they may end on another one — so
 * they become scopes under the starting thread's current scope but join no thread's stack (kernels are not
 * attributed to them). Their instance id is 3·2^40 + the range id NVTX returned, so the end, which only
 * has that id, finds it without a table. */
#define NVTX_MAX_QUEUED 200000 /* ~45 MB; drained every 0.1 s */
static pthread_mutex_t g_nvtx_mu = PTHREAD_MUTEX_INITIALIZER;
static NvtxEvent *g_nvtx;
static size_t g_nnvtx, g_capnvtx;
static uint64_t g_nvtx_dropped;
static _Atomic uint64_t g_nvtx_next = 1ULL << 40;
static __thread uint64_t tls_nvtx[MAX_SCOPE_DEPTH];
static __thread const void *tls_nvtx_dom[MAX_SCOPE_DEPTH]; /* each entry's domain (NULL: the default one) */
static __thread int tls_nvtx_depth;

/* A start/end range's instance id, from the range id NVTX gave it. */
static uint64_t nvtx_start_inst(uint64_t range_id) { return NVTX_START_BASE + (range_id & ((1ULL << 40) - 1)); }

/* What NVTX names by handle: domains (nvtxDomainCreateA) and registered strings (nvtxDomainRegisterStringA),
 * which libraries use for their ranges' messages. Libraries create a few of each, once: a small table, and
 * past its size a handle stays unnamed (the range is then "unnamed", never wrong). */
#define NVTX_MAX_NAMES 1024
static pthread_mutex_t g_names_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const void *handle;
    char name[96];
} g_names[NVTX_MAX_NAMES];
static size_t g_nnames;

static void name_handle(const void *handle, const char *name) {
    if (!handle || !name) return;
    pthread_mutex_lock(&g_names_mu);
    size_t i = 0;
    while (i < g_nnames && g_names[i].handle != handle) i++;
    if (i < NVTX_MAX_NAMES) {
        if (i == g_nnames) g_nnames++;
        g_names[i].handle = handle;
        snprintf(g_names[i].name, sizeof g_names[i].name, "%s", name);
    }
    pthread_mutex_unlock(&g_names_mu);
}

/* The name of ``handle`` copied into buf (n bytes), or NULL when NVTX never named it to us. */
static const char *handle_name(const void *handle, char *buf, size_t n) {
    const char *out = NULL;
    if (!handle) return NULL;
    pthread_mutex_lock(&g_names_mu);
    for (size_t i = 0; i < g_nnames; i++) {
        if (g_names[i].handle == handle) {
            snprintf(buf, n, "%s", g_names[i].name);
            out = buf;
            break;
        }
    }
    pthread_mutex_unlock(&g_names_mu);
    return out;
}

/* The message of NVTX event attributes: ASCII, or a registered string we saw registered; else NULL. */
static const char *nvtx_message(const nvtxEventAttributes_t *a, char *buf, size_t n) {
    if (!a) return NULL;
    if (a->messageType == NVTX_MESSAGE_TYPE_ASCII) return a->message.ascii;
    if (a->messageType == NVTX_MESSAGE_TYPE_REGISTERED) return handle_name(a->message.registered, buf, n);
    return NULL;
}

/* A range NVTX gave no message we can read (none, Unicode, a string registered before tracing): named by
 * its domain where it has one, so that a library's ranges are told apart from the program's. */
static const char *unnamed_range(nvtxDomainHandle_t domain, char *buf, size_t n) {
    char dom[96];
    if (domain && handle_name(domain, dom, sizeof dom)) {
        snprintf(buf, n, "(unnamed NVTX range, domain %s)", dom);
        return buf;
    }
    return "(unnamed NVTX range)";
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

void on_nvtx(CUpti_CallbackId cbid, const CUpti_NvtxData *d) {
    const char *name = NULL;
    nvtxDomainHandle_t domain = NULL;
    char buf[160];
    switch (cbid) {
        case CUPTI_CBID_NVTX_nvtxDomainCreateA:
            if (d->functionReturnValue) {
                const void *h = *(const nvtxDomainHandle_t *)d->functionReturnValue;
                const char *dname = ((const nvtxDomainCreateA_params *)d->functionParams)->name;
                name_handle(h, dname);
                nvtx_domain_created(h, dname);
            }
            return;
        case CUPTI_CBID_NVTX_nvtxDomainRegisterStringA:
            if (d->functionReturnValue)
                name_handle(*(const nvtxStringHandle_t *)d->functionReturnValue,
                            ((const nvtxDomainRegisterStringA_params *)d->functionParams)->string);
            return;
        case CUPTI_CBID_NVTX_nvtxRangePushA:
            if (!nvtx_domain_recorded(NULL)) { nvtx_domain_skipped(NULL); return; }
            name = ((const nvtxRangePushA_params *)d->functionParams)->message;
            break;
        case CUPTI_CBID_NVTX_nvtxRangePushEx:
            if (!nvtx_domain_recorded(NULL)) { nvtx_domain_skipped(NULL); return; }
            name = nvtx_message(((const nvtxRangePushEx_params *)d->functionParams)->eventAttrib, buf, sizeof buf);
            break;
        case CUPTI_CBID_NVTX_nvtxDomainRangePushEx: {
            const nvtxDomainRangePushEx_params *p = (const nvtxDomainRangePushEx_params *)d->functionParams;
            if (!p->domain) nvtx_domain_null_used(); /* these callbacks must then stay on (lazy domains) */
            /* a domain left out is counted and costs no more: no name copied, no scope, no queued event */
            if (!nvtx_domain_recorded(p->domain)) { nvtx_domain_skipped(p->domain); return; }
            domain = p->domain;
            name = nvtx_message(p->core.eventAttrib, buf, sizeof buf);
            break;
        }
        case CUPTI_CBID_NVTX_nvtxRangePop:
        case CUPTI_CBID_NVTX_nvtxDomainRangePop: {
            /* its push was left out too (one decision per domain): the thread's stack holds none of it */
            const void *dom = cbid == CUPTI_CBID_NVTX_nvtxDomainRangePop
                                  ? ((const nvtxDomainRangePop_params *)d->functionParams)->domain
                                  : NULL;
            if (!nvtx_domain_recorded(dom)) return;
            if (tls_nvtx_depth <= 0) return;
            if (tls_nvtx_depth > MAX_SCOPE_DEPTH) { /* deeper than we keep: its entry was never stored */
                tls_nvtx_depth--;
                return;
            }
            /* NVTX keeps a stack per domain: the pop closes this domain's innermost range, and a pop whose push
             * we did not see (its callbacks were off: lazy domains) closes none — never another domain's */
            int i = tls_nvtx_depth - 1;
            while (i >= 0 && tls_nvtx_dom[i] != dom) i--;
            if (i < 0) return;
            uint64_t inst = tls_nvtx[i];
            memmove(tls_nvtx + i, tls_nvtx + i + 1, (size_t)(tls_nvtx_depth - i - 1) * sizeof *tls_nvtx);
            memmove(tls_nvtx_dom + i, tls_nvtx_dom + i + 1, (size_t)(tls_nvtx_depth - i - 1) * sizeof *tls_nvtx_dom);
            tls_nvtx_depth--;
            if (!inst) return;
            scope_pop_range(inst);
            nvtx_queue(1, inst, 0, NULL, thread_id());
            return;
        }
        case CUPTI_CBID_NVTX_nvtxRangeStartA:
        case CUPTI_CBID_NVTX_nvtxRangeStartEx:
        case CUPTI_CBID_NVTX_nvtxDomainRangeStartEx: {
            if (!d->functionReturnValue) return;
            const void *dom = cbid == CUPTI_CBID_NVTX_nvtxDomainRangeStartEx
                                  ? ((const nvtxDomainRangeStartEx_params *)d->functionParams)->domain
                                  : NULL;
            if (!dom && cbid == CUPTI_CBID_NVTX_nvtxDomainRangeStartEx) nvtx_domain_null_used();
            if (!nvtx_domain_recorded(dom)) { nvtx_domain_skipped(dom); return; }
            uint64_t id = *(const nvtxRangeId_t *)d->functionReturnValue;
            if (cbid == CUPTI_CBID_NVTX_nvtxRangeStartA) {
                name = ((const nvtxRangeStartA_params *)d->functionParams)->message;
            } else if (cbid == CUPTI_CBID_NVTX_nvtxRangeStartEx) {
                name = nvtx_message(((const nvtxRangeStartEx_params *)d->functionParams)->eventAttrib, buf, sizeof buf);
            } else {
                const nvtxDomainRangeStartEx_params *p = (const nvtxDomainRangeStartEx_params *)d->functionParams;
                domain = p->domain;
                name = nvtx_message(p->core.eventAttrib, buf, sizeof buf);
            }
            if (!name || !*name) name = unnamed_range(domain, buf, sizeof buf);
            nvtx_queue(0, nvtx_start_inst(id), current_scope(), name, thread_id());
            return;
        }
        case CUPTI_CBID_NVTX_nvtxRangeEnd:
        case CUPTI_CBID_NVTX_nvtxDomainRangeEnd: {
            const void *dom = cbid == CUPTI_CBID_NVTX_nvtxDomainRangeEnd
                                  ? ((const nvtxDomainRangeEnd_params *)d->functionParams)->domain
                                  : NULL;
            if (!nvtx_domain_recorded(dom)) return;
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
    if (!name || !*name) name = unnamed_range(domain, buf, sizeof buf);
    /* Under the thread's own innermost scope, else the scope entered last anywhere — the rule kernels
     * follow (current_scope): a library's range on a worker thread (autograd's backward thread) then nests
     * under the program's scope instead of standing at the root, and so do the kernels launched inside it. */
    uint64_t parent = current_scope();
    uint64_t inst = atomic_fetch_add(&g_nvtx_next, 1);
    if (tls_nvtx_depth < MAX_SCOPE_DEPTH) tls_nvtx[tls_nvtx_depth] = inst, tls_nvtx_dom[tls_nvtx_depth] = domain;
    tls_nvtx_depth++;
    scope_push(inst);
    nvtx_queue(0, inst, parent, name, thread_id());
}

/* drain_nvtx (the Python engine writes the queued events to the scope stream every 0.1 s). */
size_t nvtx_take(NvtxEvent **out, uint64_t *dropped) {
    pthread_mutex_lock(&g_nvtx_mu);
    *out = g_nvtx;
    size_t n = g_nnvtx;
    *dropped = g_nvtx_dropped;
    g_nvtx = NULL;
    g_nnvtx = g_capnvtx = 0;
    g_nvtx_dropped = 0;
    pthread_mutex_unlock(&g_nvtx_mu);
    return n;
}

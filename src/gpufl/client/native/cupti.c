/* cupti.c — the seam to libcupti: loading it at run time (dlopen), and starting and stopping tracing
 * (subscriber, launch and NVTX callbacks, activity kinds and buffers) as g_opts says. The callbacks
 * themselves live in sites.c (launch), scopes.c (NVTX) and buffers.c (activity buffers). */
#include "gpufl_native.h"

#define CUPTI_FN(ret, name, args) ret(CUPTIAPI *p_##name) args;
#include "cupti_fns.h"
#undef CUPTI_FN
char *(*p_demangle)(const char *, char *, size_t *, int *);

TraceState g_trace;
void *g_cupti_lib;
NativeOptions g_opts = {.subscribe = 1, .callbacks = 1, .driver_domain = 1, .activity = 1, .nvtx = 1, .copies = 1};

/* What start_tracing does without being told otherwise (the extension's start() and inject.c begin here). */
void options_defaults(NativeOptions *o) {
    int empty = o->empty_callback;
    memset(o, 0, sizeof *o);
    o->buffer_bytes = 8u << 20;
    o->flush_period_ms = 500;
    o->subscribe = o->callbacks = o->driver_domain = o->activity = o->nvtx = o->copies = 1;
    o->empty_callback = empty; /* configure()'s, not start's */
}

const char *cupti_err(CUptiResult r) {
    const char *s = NULL;
    if (p_cuptiGetResultString && p_cuptiGetResultString(r, &s) == CUPTI_SUCCESS && s) return s;
    return "CUPTI_ERROR_UNKNOWN";
}

/* dlopen libcupti and resolve what we call; NULL on success, else why not. */
const char *load_cupti(const char *path) {
    static char err[512];
    if (g_trace.loaded) return NULL;
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
    g_cupti_lib = h;
    uint32_t v = 0;
    p_cuptiGetVersion(&v);
    g_trace.version = v;
    g_trace.loaded = 1;
    return NULL;
}

/* Launch callbacks on or off, per domain (start_tracing; configure() while tracing, for diagnostics). */
void enable_launch_callbacks(int on, int runtime, int driver) {
    for (size_t i = 0; i < sizeof RUNTIME_CBIDS / sizeof *RUNTIME_CBIDS; i++)
        p_cuptiEnableCallback(on && runtime, g_trace.sub, CUPTI_CB_DOMAIN_RUNTIME_API, RUNTIME_CBIDS[i]);
    for (size_t i = 0; i < sizeof DRIVER_CBIDS / sizeof *DRIVER_CBIDS; i++)
        p_cuptiEnableCallback(on && driver, g_trace.sub, CUPTI_CB_DOMAIN_DRIVER_API, DRIVER_CBIDS[i]);
}

/* The kernel kind to switch: the serial one inside a SASS-metrics range (deep.c: CUPTI's concurrent kind and
 * SASS metrics exclude each other), else what start_tracing chose. */
CUpti_ActivityKind active_kernel_kind(void) {
    return g_trace.sass_range ? CUPTI_ACTIVITY_KIND_KERNEL : g_trace.kernel_kind;
}

/* The activity kinds start_tracing enabled, on or off (configure(), diagnostics). */
void enable_activity(int on) {
    CUpti_ActivityKind kinds[4] = {active_kernel_kind(), CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET,
                                   CUPTI_ACTIVITY_KIND_SYNCHRONIZATION};
    for (int i = 0; i < (g_opts.copies ? (g_opts.syncs ? 4 : 3) : 1); i++) {
        if (on) p_cuptiActivityEnable(kinds[i]);
        else p_cuptiActivityDisable(kinds[i]);
    }
}

#ifndef GPUFL_INJECTION /* scopes are written by the Python engine; the injection build has none */
/* The default domain's ranges and thread names: on inside capture windows. */
static const CUpti_CallbackId NVTX_CBIDS[] = {
    CUPTI_CBID_NVTX_nvtxRangePushA,  CUPTI_CBID_NVTX_nvtxRangePushEx,  CUPTI_CBID_NVTX_nvtxRangePop,
    CUPTI_CBID_NVTX_nvtxNameOsThreadA, CUPTI_CBID_NVTX_nvtxRangeStartA, CUPTI_CBID_NVTX_nvtxRangeStartEx,
    CUPTI_CBID_NVTX_nvtxRangeEnd};
/* The domain API's ranges: inside windows, and where domains are lazy only while nvtx_domains.c wants them
 * (it says why: CUPTI's dispatch of XLA's ranges, only to count them, cost JAX +43 %). */
static const CUpti_CallbackId NVTX_DOMAIN_RANGE_CBIDS[] = {
    CUPTI_CBID_NVTX_nvtxDomainRangePushEx, CUPTI_CBID_NVTX_nvtxDomainRangePop, CUPTI_CBID_NVTX_nvtxDomainRangeStartEx,
    CUPTI_CBID_NVTX_nvtxDomainRangeEnd};
/* The names of domains and registered strings, which libraries' ranges refer to by handle: on whenever
 * subscribed (rare calls), so a domain created outside a window is known inside one. */
static const CUpti_CallbackId NVTX_NAME_CBIDS[] = {CUPTI_CBID_NVTX_nvtxDomainCreateA,
                                                   CUPTI_CBID_NVTX_nvtxDomainRegisterStringA};
static pthread_mutex_t g_nvtx_mu = PTHREAD_MUTEX_INITIALIZER; /* capture_switch and the NVTX drain both switch */

static void enable_cbids(int on, const CUpti_CallbackId *ids, size_t n) {
    for (size_t i = 0; i < n; i++) p_cuptiEnableCallback(on, g_trace.sub, CUPTI_CB_DOMAIN_NVTX, ids[i]);
}

/* The NVTX callbacks for `capturing` (inside a window or not); g_nvtx_mu held. */
static void nvtx_apply_locked(int capturing) {
    enable_cbids(capturing, NVTX_CBIDS, sizeof NVTX_CBIDS / sizeof *NVTX_CBIDS);
    int ranges = capturing && nvtx_domain_ranges_wanted();
    if (ranges != g_trace.nvtx_ranges_on) {
        enable_cbids(ranges, NVTX_DOMAIN_RANGE_CBIDS, sizeof NVTX_DOMAIN_RANGE_CBIDS / sizeof *NVTX_DOMAIN_RANGE_CBIDS);
        g_trace.nvtx_ranges_on = ranges;
    }
    if (capturing && !ranges) nvtx_domain_ranges_switched(0);
}

static void nvtx_apply(int capturing) {
    pthread_mutex_lock(&g_nvtx_mu);
    nvtx_apply_locked(capturing);
    pthread_mutex_unlock(&g_nvtx_mu);
}

/* From the NVTX drain (a thread of ours, never a CUPTI callback: whether CUPTI takes cuptiEnableCallback from
 * inside its own callback is not documented): the domain-API range callbacks on or off as nvtx_domains.c now
 * wants them (a framework's domain created: off; a recorded one, or a NULL-handle range: on; within 0.1 s). */
void nvtx_apply_lazy_domains(void) {
    if (g_trace.capture_off || g_trace.nvtx_ranges_on == nvtx_domain_ranges_wanted()) return; /* no lock */
    pthread_mutex_lock(&g_nvtx_mu);
    /* capture_off is set before capture_switch takes the lock: a window closing now is never undone here */
    if (g_trace.active && g_trace.subscribed && g_opts.nvtx && !g_trace.capture_off) nvtx_apply_locked(1);
    pthread_mutex_unlock(&g_nvtx_mu);
}
#endif

/* A capture window opens (on) or closes: what start_tracing enabled, on or off, so that outside a window a
 * launch reaches no gpufl callback and CUPTI records nothing. The records of the window's last kernels, still
 * running at its close, come with the flusher's next forced flush (at most flush_period_ms later): a flush
 * forced at the close itself would deliver them without timestamps (counted as untimed, not written). */
void capture_switch(int on) {
    const NativeOptions *o = &g_opts;
    if (g_trace.subscribed) {
        if (o->callbacks) enable_launch_callbacks(on, o->runtime_domain, o->driver_domain);
#ifndef GPUFL_INJECTION
        if (o->nvtx) nvtx_apply(on);
#endif
    }
    if (o->activity) enable_activity(on);
}

/* Subscribe, enable launch callbacks and activity kinds, as g_opts says. NULL on success (*enabled = launch
 * callbacks enabled, -1 when switched off for diagnostics), else why not (the CUPTI error text).
 * Driver-API callbacks alone see every launch: the runtime's launches reach the driver too, and their
 * kernels carry the driver call's correlation id (every kernel joined on the H100, runtime-launched and
 * cuBLASLt's driver launches alike), so runtime-API callbacks would only add CUPTI dispatches. */
/* CUPTI's own periodic flush (cuptiActivityFlushPeriod) returns only buffers that are full with every record
 * complete (CUPTI's documentation), so a partly filled buffer waited for the next buffer or for the end: on the
 * H100 a program that hit a device-side assert 1 s after 60 kernels got them back untimed, none written. A
 * forced flush every period, from a thread of ours, delivers whatever is complete: what a killed program or a
 * failed context can lose is then about one period. */
static pthread_t g_flusher;
static int g_flusher_on, g_flush_stop, g_atfork_set;
static pthread_mutex_t g_flush_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_flush_cv = PTHREAD_COND_INITIALIZER;

static void *flusher_main(void *arg) {
    unsigned period_ms = (unsigned)(uintptr_t)arg;
    pthread_mutex_lock(&g_flush_mu);
    while (!g_flush_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += period_ms / 1000;
        ts.tv_nsec += (long)(period_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_flush_cv, &g_flush_mu, &ts);
        if (g_flush_stop) break;
        pthread_mutex_unlock(&g_flush_mu);
        p_cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
        pthread_mutex_lock(&g_flush_mu);
    }
    pthread_mutex_unlock(&g_flush_mu);
    return NULL;
}

/* A forked child has no flusher thread (threads do not survive fork): it must not join one. */
static void flusher_after_fork_child(void) { g_flusher_on = 0; }

static void flusher_start(unsigned period_ms) {
    if (g_flusher_on || !period_ms) return;
    if (!g_atfork_set) {
        pthread_atfork(NULL, NULL, flusher_after_fork_child);
        g_atfork_set = 1;
    }
    g_flush_stop = 0;
    g_flusher_on = pthread_create(&g_flusher, NULL, flusher_main, (void *)(uintptr_t)period_ms) == 0;
}

static void flusher_stop(void) {
    if (!g_flusher_on) return;
    pthread_mutex_lock(&g_flush_mu);
    g_flush_stop = 1;
    pthread_cond_signal(&g_flush_cv);
    pthread_mutex_unlock(&g_flush_mu);
    pthread_join(g_flusher, NULL);
    g_flusher_on = 0;
}

const char *start_tracing(int *enabled_out) {
    static char err[256];
    if (g_trace.active) return NULL;
    const NativeOptions *o = &g_opts;
    CUptiResult r;
    int want_sub = o->subscribe;
    int want_cb = want_sub && o->callbacks;
    int want_nvtx = want_sub && o->nvtx;
    nvtx_domains_configure(o->nvtx_domains, o->nvtx_lazy_domains);
    g_trace.kernel_kind = o->serial_kernels ? CUPTI_ACTIVITY_KIND_KERNEL : CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
    if (p_cuptiActivitySetAttribute && o->host_pinned) {
        uint8_t one = 1;
        size_t sz = sizeof one;
        p_cuptiActivitySetAttribute(CUPTI_ACTIVITY_ATTR_MEM_ALLOCATION_TYPE_HOST_PINNED, &sz, &one);
    }
    if (p_cuptiActivitySetAttribute && o->device_buffer_mb > 0) {
        size_t bytes = (size_t)o->device_buffer_mb << 20, sz = sizeof bytes;
        p_cuptiActivitySetAttribute(CUPTI_ACTIVITY_ATTR_DEVICE_BUFFER_SIZE, &sz, &bytes);
    }
    if (want_sub) {
        /* Subscribe first: failing here means another CUPTI client (torch.profiler, nsys) owns this process,
         * and registering activity buffers under its feet hung its flush (seen on the H100). */
        r = p_cuptiSubscribe(&g_trace.sub, (CUpti_CallbackFunc)on_api, NULL);
        if (r != CUPTI_SUCCESS) {
            snprintf(err, sizeof err, "cuptiSubscribe: %s", cupti_err(r));
            return err;
        }
        g_trace.subscribed = 1;
    }
    int enabled = 0;
    if (want_cb) {
        for (size_t i = 0; o->runtime_domain && i < sizeof RUNTIME_CBIDS / sizeof *RUNTIME_CBIDS; i++)
            enabled += p_cuptiEnableCallback(1, g_trace.sub, CUPTI_CB_DOMAIN_RUNTIME_API, RUNTIME_CBIDS[i]) ==
                       CUPTI_SUCCESS;
        for (size_t i = 0; o->driver_domain && i < sizeof DRIVER_CBIDS / sizeof *DRIVER_CBIDS; i++)
            enabled += p_cuptiEnableCallback(1, g_trace.sub, CUPTI_CB_DOMAIN_DRIVER_API, DRIVER_CBIDS[i]) ==
                       CUPTI_SUCCESS;
    }
    int capturing = !g_trace.capture_off; /* outside a capture window: nothing enabled until one opens */
    if (want_cb && !capturing) enable_launch_callbacks(0, 1, 1); /* enabled above only to learn they can be */
#ifndef GPUFL_INJECTION
    g_trace.nvtx_ranges_on = 0;
    if (want_nvtx) {
        enable_cbids(1, NVTX_NAME_CBIDS, sizeof NVTX_NAME_CBIDS / sizeof *NVTX_NAME_CBIDS);
        if (capturing) nvtx_apply(1);
    }
#else
    (void)want_nvtx;
#endif
    r = p_cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
    if (o->activity && capturing) {
        if (r == CUPTI_SUCCESS) r = p_cuptiActivityEnable(g_trace.kernel_kind);
        if (r == CUPTI_SUCCESS && o->copies) r = p_cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
        if (r == CUPTI_SUCCESS && o->copies) r = p_cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
        /* the host waiting in cudaDeviceSynchronize & co. (contract v3 "sync"): what the insights' synchronisation
         * rule reads; a handful of records per step, but with this kind on CUPTI costs every launch (+20 points
         * on a launch-bound GPT loop on the H100), so only on request (GPUFL_SYNCS=1) */
        if (r == CUPTI_SUCCESS && o->copies && o->syncs)
            r = p_cuptiActivityEnable(CUPTI_ACTIVITY_KIND_SYNCHRONIZATION);
    }
    if (r != CUPTI_SUCCESS) {
        p_cuptiActivityDisable(g_trace.kernel_kind);
        p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
        p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET);
        p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_SYNCHRONIZATION);
        if (g_trace.subscribed) p_cuptiUnsubscribe(g_trace.sub);
        g_trace.subscribed = 0;
        g_trace.sub = NULL;
        snprintf(err, sizeof err, "CUPTI activity: %s", cupti_err(r));
        return err;
    }
    /* A killed program loses at most about this much (buffers are otherwise delivered when full). */
    if (p_cuptiActivityFlushPeriod && o->flush_period_ms) p_cuptiActivityFlushPeriod(o->flush_period_ms);
    g_trace.active = 1;
    if (o->activity) flusher_start(o->flush_period_ms);
    *enabled_out = want_cb ? enabled : -1;
    return NULL;
}

/* Flush, disable, unsubscribe, and finalize when `finalize` (CUPTI may call back into us meanwhile).
 * Stepping aside for another CUPTI client does not finalize: unsubscribing is all the other client needs
 * to subscribe, and a finalize followed by its re-initialisation is the teardown CUPTI users report
 * crashes in (Kineto turns its own CUPTI teardown off around CUDA graphs for that reason). */
void stop_tracing(CUptiResult *flush, CUptiResult *fin, int finalize) {
    flusher_stop(); /* before CUPTI is torn down under it */
    *flush = p_cuptiActivityFlushAll(1);
    p_cuptiActivityDisable(active_kernel_kind());
    p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
    p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET);
    p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_SYNCHRONIZATION);
    p_cuptiActivityFlushAll(1);
#ifndef GPUFL_INJECTION
    /* the NVTX drain switches callbacks on this handle under g_nvtx_mu (lazy domains) and checks `subscribed`
     * there: none is half-way through when the handle goes, and none starts after */
    pthread_mutex_lock(&g_nvtx_mu);
#endif
    CUpti_SubscriberHandle sub = g_trace.subscribed ? g_trace.sub : NULL;
    g_trace.subscribed = 0;
    g_trace.sub = NULL;
#ifndef GPUFL_INJECTION
    pthread_mutex_unlock(&g_nvtx_mu);
#endif
    if (sub) p_cuptiUnsubscribe(sub);
    /* Without finalize, applications stayed 10-20% slower after profiling (pytorch/pytorch#146604). */
    /* our delivery period must not stay on for the next client (CUPTI keeps it until finalize) */
    if (p_cuptiActivityFlushPeriod) p_cuptiActivityFlushPeriod(0);
    *fin = finalize ? p_cuptiFinalize() : CUPTI_SUCCESS;
    g_trace.active = 0;
}

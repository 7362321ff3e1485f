/* nvtx_domains.c — which NVTX domains become scopes (#21). A framework that annotates its own internals
 * opens ranges far more often than a program does: XLA (JAX) opens ~30 per jitted call in its TSL profiler
 * domain, and each one made into a scope record cost a 0.07 ms/iteration loop +150–270 % (docs/benchmarks.md).
 * So, by default, the default domain (nvtxRangePush*, where PyTorch and most programs annotate) and every
 * named domain but those known to be framework-internal become scopes; the others are only counted, per
 * domain, and the count is reported once at the end of tracing (the Python engine's notice). What to record
 * is GPUFL_NVTX_DOMAINS (gpufl.init(nvtx_domains=...)): tokens "default" (the default domain), "named" (every
 * named domain except the framework-internal ones), "all" (every domain), or a domain's own name.
 *
 * The table is filled when a domain is created (nvtxDomainCreateA) and only grows: readers scan it without a
 * lock (an entry is written whole before the count that publishes it). A domain created before tracing began
 * has no name for us: under "named" or "all" it is recorded (we cannot tell it is a framework's; its first
 * range keeps the lazy range callbacks below on, so its pops are seen), under a list of names it is counted
 * as "(a domain created before tracing)".
 *
 * Lazy domain callbacks. Counting a left-out range is cheap for us, but CUPTI's NVTX callback dispatch is not:
 * XLA's ~60 push/pop calls per jitted JAX call cost +43 % on the H100 (session 14) with each one only counted.
 * So where every domain's creation is seen (the session set NVTX_INJECTION64_PATH itself, so no library could
 * have created one through CUPTI before: `lazy`), once a framework's internal domain (TSL) is created the
 * domain-API range callbacks (nvtxDomainRange*) are switched off — unless a recorded named domain exists, or
 * the default domain has been used through the domain API (a NULL handle: nvtx3's C++ global-domain ranges,
 * the `nvtx` package's annotate), which only those callbacks see. While they are off the left-out domains'
 * ranges are not seen, and their count says so (`partial`); a NULL-handle range issued only after the switch
 * is not seen either (docs/capture-modes.md). nvtxRangePush and nvtxRangeStart (the default domain's C API: PyTorch,
 * CuPy) have callbacks of their own and stay on; the creation callbacks (nvtxDomainCreateA,
 * nvtxDomainRegisterStringA) are on even outside capture windows. Switching happens off the CUPTI callback
 * (cupti.c's nvtx_apply, from the NVTX drain: within 0.1 s). */
#include "gpufl_native.h"

#define MAX_DOMAINS 256
#define SPEC_MAX 256

/* Domains that frameworks create for their own internals, left out by "named" (add a name to record it). */
static const char *const FRAMEWORK_DOMAINS[] = {"TSL"}; /* XLA's (JAX, TensorFlow): tsl::profiler's domain */

typedef struct {
    const void *handle;
    int recorded;
    _Atomic uint64_t skipped;
    char name[64];
} Domain;

static Domain g_domains[MAX_DOMAINS];
static _Atomic size_t g_ndomains;
static pthread_mutex_t g_domains_mu = PTHREAD_MUTEX_INITIALIZER; /* writers only */
static Domain g_unnamed;                                          /* handles we never saw created */
static Domain g_default_domain;                                   /* ranges of no domain */
static int g_default = 1, g_named = 1, g_all = 0;
static int g_lazy;                                    /* see above */
static _Atomic int g_framework_seen, g_recorded_seen, g_null_seen; /* what keeps the range callbacks on, or not */
static _Atomic int g_ranges_were_off; /* the domain-API range callbacks were off at some time */
static char g_spec[SPEC_MAX] = "default,named";

/* Is `name` one of the comma-separated tokens of g_spec? */
static int spec_names(const char *name) {
    size_t n = strlen(name);
    for (const char *p = g_spec; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') p++, len--;
        while (len && p[len - 1] == ' ') len--;
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

void nvtx_domains_configure(const char *spec, int lazy) {
    pthread_mutex_lock(&g_domains_mu);
    g_lazy = lazy;
    atomic_store(&g_framework_seen, 0);
    atomic_store(&g_recorded_seen, 0);
    atomic_store(&g_null_seen, 0);
    atomic_store(&g_ranges_were_off, 0);
    snprintf(g_spec, sizeof g_spec, "%s", spec && *spec ? spec : "default,named");
    g_all = spec_names("all");
    g_default = g_all || spec_names("default");
    g_named = g_all || spec_names("named");
    /* a domain created under the previous spec is decided again (a later session in this process) */
    size_t n = atomic_load(&g_ndomains);
    for (size_t i = 0; i < n; i++) {
        Domain *d = &g_domains[i];
        d->recorded = -1;
        atomic_store(&d->skipped, 0);
    }
    atomic_store(&g_unnamed.skipped, 0);
    atomic_store(&g_default_domain.skipped, 0);
    pthread_mutex_unlock(&g_domains_mu);
}

static int is_framework(const char *name) {
    for (size_t i = 0; i < sizeof FRAMEWORK_DOMAINS / sizeof *FRAMEWORK_DOMAINS; i++)
        if (strcmp(name, FRAMEWORK_DOMAINS[i]) == 0) return 1;
    return 0;
}

static int decide(const char *name) {
    if (g_all || spec_names(name)) return 1;
    return g_named && !is_framework(name);
}

void nvtx_domain_created(const void *handle, const char *name) {
    if (!handle) return;
    pthread_mutex_lock(&g_domains_mu);
    size_t n = atomic_load(&g_ndomains), i = 0;
    while (i < n && g_domains[i].handle != handle) i++;
    if (i < MAX_DOMAINS) {
        Domain *d = &g_domains[i];
        snprintf(d->name, sizeof d->name, "%s", name ? name : "");
        d->recorded = decide(d->name);
        d->handle = handle;
        if (i == n) atomic_store(&g_ndomains, n + 1); /* published after the entry is whole */
        if (d->recorded) atomic_store(&g_recorded_seen, 1);
        else if (is_framework(d->name)) atomic_store(&g_framework_seen, 1);
    } else {
        atomic_store(&g_recorded_seen, 1); /* a domain the table cannot hold is recorded ("named"): see it */
    }
    pthread_mutex_unlock(&g_domains_mu);
}

/* A domain-API range of the default domain (NULL handle) was seen: the range callbacks must stay on. */
void nvtx_domain_null_used(void) {
    if (!atomic_load(&g_null_seen)) atomic_store(&g_null_seen, 1);
}

/* Whether the domain-API range callbacks should be on (cupti.c switches them, off the CUPTI callback). */
int nvtx_domain_ranges_wanted(void) {
    return !g_lazy || !atomic_load(&g_framework_seen) || atomic_load(&g_recorded_seen) || atomic_load(&g_null_seen);
}

/* cupti.c says when it switched them: while off, the left-out domains' counts are partial. */
void nvtx_domain_ranges_switched(int on) {
    if (!on) atomic_store(&g_ranges_were_off, 1);
}

static Domain *find(const void *handle) {
    size_t n = atomic_load(&g_ndomains);
    for (size_t i = 0; i < n; i++)
        if (g_domains[i].handle == handle) return &g_domains[i];
    return NULL;
}

int nvtx_domain_recorded(const void *handle) {
    if (!handle) return g_default;
    Domain *d = find(handle);
    if (!d) {
        /* a domain created before its creation could be seen (between NVTX_INJECTION64_PATH and the
         * subscription): recorded, so its pops must be seen too — the range callbacks stay on */
        int rec = g_named || g_all;
        if (rec && !atomic_load(&g_recorded_seen)) atomic_store(&g_recorded_seen, 1);
        return rec;
    }
    if (d->recorded < 0) d->recorded = decide(d->name); /* reconfigured since it was created */
    return d->recorded;
}

void nvtx_domain_skipped(const void *handle) {
    Domain *d = handle ? find(handle) : &g_default_domain;
    atomic_fetch_add(d ? &d->skipped : &g_unnamed.skipped, 1);
}

size_t nvtx_domain_counts(NvtxDomainCount *out, size_t max) {
    size_t n = atomic_load(&g_ndomains), k = 0;
    /* while the domain-API range callbacks were off, a left-out domain's ranges were (also) not seen: its count
     * is partial, or unknown if 0 — listed then too */
    int off = atomic_load(&g_ranges_were_off);
    for (size_t i = 0; i < n && k < max; i++) {
        const Domain *d = &g_domains[i];
        uint64_t s = atomic_load(&d->skipped);
        int partial = off && !(d->recorded < 0 ? decide(d->name) : d->recorded);
        if (!s && !partial) continue;
        snprintf(out[k].name, sizeof out[k].name, "%s", d->name);
        out[k].partial = partial;
        out[k++].skipped = s;
    }
    /* these two are counted through the domain API too (a NULL handle, an unknown one): partial as well */
    uint64_t s = atomic_load(&g_default_domain.skipped);
    if (s && k < max) {
        snprintf(out[k].name, sizeof out[k].name, "%s", "(default domain)");
        out[k].partial = off;
        out[k++].skipped = s;
    }
    s = atomic_load(&g_unnamed.skipped);
    if (s && k < max) {
        snprintf(out[k].name, sizeof out[k].name, "%s", "(a domain created before tracing)");
        out[k].partial = off;
        out[k++].skipped = s;
    }
    return k;
}

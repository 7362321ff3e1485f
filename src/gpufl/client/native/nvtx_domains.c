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
 * has no name for us: under "named" or "all" it is recorded (we cannot tell it is a framework's), under a
 * list of names it is counted as "(a domain created before tracing)". */
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

void nvtx_domains_configure(const char *spec) {
    pthread_mutex_lock(&g_domains_mu);
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

static int decide(const char *name) {
    if (g_all || spec_names(name)) return 1;
    if (!g_named) return 0;
    for (size_t i = 0; i < sizeof FRAMEWORK_DOMAINS / sizeof *FRAMEWORK_DOMAINS; i++)
        if (strcmp(name, FRAMEWORK_DOMAINS[i]) == 0) return 0;
    return 1;
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
    }
    pthread_mutex_unlock(&g_domains_mu);
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
    if (!d) return g_named || g_all;
    if (d->recorded < 0) d->recorded = decide(d->name); /* reconfigured since it was created */
    return d->recorded;
}

void nvtx_domain_skipped(const void *handle) {
    Domain *d = handle ? find(handle) : &g_default_domain;
    atomic_fetch_add(d ? &d->skipped : &g_unnamed.skipped, 1);
}

size_t nvtx_domain_counts(NvtxDomainCount *out, size_t max) {
    size_t n = atomic_load(&g_ndomains), k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        uint64_t s = atomic_load(&g_domains[i].skipped);
        if (!s) continue;
        snprintf(out[k].name, sizeof out[k].name, "%s", g_domains[i].name);
        out[k++].skipped = s;
    }
    uint64_t s = atomic_load(&g_default_domain.skipped);
    if (s && k < max) {
        snprintf(out[k].name, sizeof out[k].name, "%s", "(default domain)");
        out[k++].skipped = s;
    }
    s = atomic_load(&g_unnamed.skipped);
    if (s && k < max) {
        snprintf(out[k].name, sizeof out[k].name, "%s", "(a domain created before tracing)");
        out[k++].skipped = s;
    }
    return k;
}

/* deep.c — the deep engines (issue #19): CUPTI's SASS metrics (per-PC warp and thread instruction counts:
 * warp divergence) and PC sampling (per-PC stall reasons), over ranges the Python side opens and closes
 * (gpufl.scope(..., deep=True) or the whole session). Neither API is bound by cupti-python, so they live here,
 * beside the process's one CUPTI subscriber.
 *
 * Shape: deep_setup() once per process on the context current at the first deep range (both APIs work per
 * context); deep_begin() enables SASS patching (lazy: a function is patched at its first launch in the range)
 * and starts PC sampling (continuous mode, start/stop control: kernels keep running concurrently, unlike the
 * kernel-serialised mode that made the seed's client +665%); deep_end() waits for the context's work, stops,
 * and copies both engines' data into C arrays, which the Python side turns into records. No CUPTI call here
 * holds the GIL. Module cubins are kept (MODULE_LOADED resource callback) while an engine is on so a PC maps to
 * its source line (cuptiGetSassToSourceCorrelation) where the module has line info.
 *
 * libcupti's deep entry points are resolved by dlsym from the handle load_cupti opened: a libcupti without them
 * makes deep_setup say so, and the rest of gpufl runs on. Not in the injection build. */
#include "gpufl_native.h"

#ifndef GPUFL_INJECTION
#include <cupti_pcsampling.h>
#include <cupti_profiler_target.h>
#include <cupti_sass_metrics.h>
#include <cupti_target.h>

#include "deep.h"

#define DEEP_FN(ret, name, args) static ret(CUPTIAPI *d_##name) args;
DEEP_FN(CUptiResult, cuptiProfilerInitialize, (CUpti_Profiler_Initialize_Params *))
DEEP_FN(CUptiResult, cuptiDeviceGetChipName, (CUpti_Device_GetChipName_Params *))
DEEP_FN(CUptiResult, cuptiSassMetricsGetProperties, (CUpti_SassMetrics_GetProperties_Params *))
DEEP_FN(CUptiResult, cuptiSassMetricsSetConfig, (CUpti_SassMetricsSetConfig_Params *))
DEEP_FN(CUptiResult, cuptiSassMetricsUnsetConfig, (CUpti_SassMetricsUnsetConfig_Params *))
DEEP_FN(CUptiResult, cuptiSassMetricsEnable, (CUpti_SassMetricsEnable_Params *))
DEEP_FN(CUptiResult, cuptiSassMetricsDisable, (CUpti_SassMetricsDisable_Params *))
DEEP_FN(CUptiResult, cuptiSassMetricsGetDataProperties, (CUpti_SassMetricsGetDataProperties_Params *))
DEEP_FN(CUptiResult, cuptiSassMetricsFlushData, (CUpti_SassMetricsFlushData_Params *))
DEEP_FN(CUptiResult, cuptiPCSamplingEnable, (CUpti_PCSamplingEnableParams *))
DEEP_FN(CUptiResult, cuptiPCSamplingDisable, (CUpti_PCSamplingDisableParams *))
DEEP_FN(CUptiResult, cuptiPCSamplingStart, (CUpti_PCSamplingStartParams *))
DEEP_FN(CUptiResult, cuptiPCSamplingStop, (CUpti_PCSamplingStopParams *))
DEEP_FN(CUptiResult, cuptiPCSamplingGetData, (CUpti_PCSamplingGetDataParams *))
DEEP_FN(CUptiResult, cuptiPCSamplingSetConfigurationAttribute, (CUpti_PCSamplingConfigurationInfoParams *))
DEEP_FN(CUptiResult, cuptiPCSamplingGetNumStallReasons, (CUpti_PCSamplingGetNumStallReasonsParams *))
DEEP_FN(CUptiResult, cuptiPCSamplingGetStallReasons, (CUpti_PCSamplingGetStallReasonsParams *))
DEEP_FN(CUptiResult, cuptiGetSassToSourceCorrelation, (CUpti_GetSassToSourceCorrelationParams *))
DEEP_FN(CUptiResult, cuptiGetCubinCrc, (CUpti_GetCubinCrcParams *))
#undef DEEP_FN
/* the driver calls the deep engines need: the context, its device, waiting for its work */
static CUresult (*c_cuCtxGetCurrent)(CUcontext *);
static CUresult (*c_cuCtxSetCurrent)(CUcontext);
static CUresult (*c_cuCtxGetDevice)(CUdevice *);
static CUresult (*c_cuCtxSynchronize)(void);
static CUresult (*c_cuInit)(unsigned);
static CUresult (*c_cuDeviceGetCount)(int *);
/* optional (the fallback of deep_setup off the program's threads): the runtime's primary contexts */
static CUresult (*c_cuDeviceGet)(CUdevice *, int);
static CUresult (*c_cuDevicePrimaryCtxGetState)(CUdevice, unsigned int *, int *);
static CUresult (*c_cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
static CUresult (*c_cuDevicePrimaryCtxRelease)(CUdevice);

DeepState g_deep;
static pthread_mutex_t g_cubin_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *fail(const char *what, CUptiResult r) {
    snprintf(g_deep.err, sizeof g_deep.err, "%s: %s", what, cupti_err(r));
    return g_deep.err;
}

/* The deep engines' CUPTI and driver entry points, looked up once per libcupti handle (each range's setup
 * asks again; dlopen of libcuda would take a reference each time). */
static const char *resolve(void) {
    static void *resolved_for;
    if (!g_cupti_lib) return "libcupti is not loaded";
    if (resolved_for == g_cupti_lib) return NULL;
#define R(name)                                                                                        \
    do {                                                                                               \
        *(void **)&d_##name = dlsym(g_cupti_lib, #name);                                               \
        if (!d_##name) {                                                                               \
            snprintf(g_deep.err, sizeof g_deep.err, "this libcupti has no %s (CUDA 12.4+ needed)", #name); \
            return g_deep.err;                                                                         \
        }                                                                                              \
    } while (0)
    R(cuptiProfilerInitialize);
    R(cuptiDeviceGetChipName);
    R(cuptiSassMetricsGetProperties);
    R(cuptiSassMetricsSetConfig);
    R(cuptiSassMetricsUnsetConfig);
    R(cuptiSassMetricsEnable);
    R(cuptiSassMetricsDisable);
    R(cuptiSassMetricsGetDataProperties);
    R(cuptiSassMetricsFlushData);
    R(cuptiPCSamplingEnable);
    R(cuptiPCSamplingDisable);
    R(cuptiPCSamplingStart);
    R(cuptiPCSamplingStop);
    R(cuptiPCSamplingGetData);
    R(cuptiPCSamplingSetConfigurationAttribute);
    R(cuptiPCSamplingGetNumStallReasons);
    R(cuptiPCSamplingGetStallReasons);
    R(cuptiGetSassToSourceCorrelation);
    R(cuptiGetCubinCrc);
#undef R
    void *cu = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!cu) cu = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cu) return "libcuda.so.1 cannot be loaded";
    *(void **)&c_cuCtxGetCurrent = dlsym(cu, "cuCtxGetCurrent");
    *(void **)&c_cuCtxSetCurrent = dlsym(cu, "cuCtxSetCurrent");
    *(void **)&c_cuCtxGetDevice = dlsym(cu, "cuCtxGetDevice");
    *(void **)&c_cuCtxSynchronize = dlsym(cu, "cuCtxSynchronize");
    *(void **)&c_cuInit = dlsym(cu, "cuInit");
    *(void **)&c_cuDeviceGetCount = dlsym(cu, "cuDeviceGetCount");
    *(void **)&c_cuDeviceGet = dlsym(cu, "cuDeviceGet");
    *(void **)&c_cuDevicePrimaryCtxGetState = dlsym(cu, "cuDevicePrimaryCtxGetState");
    *(void **)&c_cuDevicePrimaryCtxRetain = dlsym(cu, "cuDevicePrimaryCtxRetain");
    *(void **)&c_cuDevicePrimaryCtxRelease = dlsym(cu, "cuDevicePrimaryCtxRelease_v2"); /* cuda.h's name for it */
    if (!c_cuCtxGetCurrent || !c_cuCtxSetCurrent || !c_cuCtxGetDevice || !c_cuCtxSynchronize || !c_cuInit ||
        !c_cuDeviceGetCount)
        return "libcuda.so.1 lacks the context calls";
    resolved_for = g_cupti_lib;
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ cubins */

typedef struct {
    uint64_t crc;
    char *data;
    size_t size;
} Cubin;
static Cubin *g_cubins;
static size_t g_ncubins, g_cubin_cap, g_cubin_bytes;

/* CUPTI's MODULE_LOADED resource callback (sites.c's on_api routes it here): keep a copy of the cubin, keyed
 * by the CRC CUPTI's deep APIs report, while a deep engine is on; bounded by g_deep.cubin_budget. */
void deep_on_resource(CUpti_CallbackId cbid, const void *cbdata) {
    if (cbid != CUPTI_CBID_RESOURCE_MODULE_LOADED || !g_deep.watch_modules || !d_cuptiGetCubinCrc) return;
    const CUpti_ResourceData *rd = (const CUpti_ResourceData *)cbdata;
    const CUpti_ModuleResourceData *m = (const CUpti_ModuleResourceData *)rd->resourceDescriptor;
    if (!m || !m->pCubin || !m->cubinSize) return;
    CUpti_GetCubinCrcParams p = {.size = sizeof p, .cubinSize = m->cubinSize, .cubin = m->pCubin};
    if (d_cuptiGetCubinCrc(&p) != CUPTI_SUCCESS) return;
    pthread_mutex_lock(&g_cubin_mu);
    int known = 0;
    for (size_t i = 0; i < g_ncubins && !known; i++) known = g_cubins[i].crc == p.cubinCrc;
    if (!known && g_cubin_bytes + m->cubinSize > g_deep.cubin_budget) {
        g_deep.cubins_skipped++;
    } else if (!known) {
        if (g_ncubins == g_cubin_cap) {
            size_t cap = g_cubin_cap ? 2 * g_cubin_cap : 64;
            Cubin *v = realloc(g_cubins, cap * sizeof *v);
            if (v) g_cubins = v, g_cubin_cap = cap;
        }
        char *copy = g_ncubins < g_cubin_cap ? malloc(m->cubinSize) : NULL;
        if (copy) {
            memcpy(copy, m->pCubin, m->cubinSize);
            g_cubins[g_ncubins++] = (Cubin){p.cubinCrc, copy, m->cubinSize};
            g_cubin_bytes += m->cubinSize;
        } else {
            g_deep.cubins_skipped++;
        }
    }
    pthread_mutex_unlock(&g_cubin_mu);
}

/* The source line of one PC: 0 and *file = NULL where the cubin was not kept or has no line info. The strings
 * are CUPTI's (malloc'd): the caller frees them. */
int deep_source_line(uint64_t crc, const char *function, uint64_t pc, char **file, char **dir, uint32_t *line) {
    *file = *dir = NULL;
    *line = 0;
    pthread_mutex_lock(&g_cubin_mu);
    const Cubin *c = NULL;
    for (size_t i = 0; i < g_ncubins && !c; i++)
        if (g_cubins[i].crc == crc) c = &g_cubins[i];
    CUptiResult r = CUPTI_ERROR_UNKNOWN;
    if (c && d_cuptiGetSassToSourceCorrelation) {
        CUpti_GetSassToSourceCorrelationParams p = {
            .size = sizeof p, .cubin = c->data, .functionName = function, .cubinSize = c->size, .pcOffset = pc};
        r = d_cuptiGetSassToSourceCorrelation(&p);
        if (r == CUPTI_SUCCESS) *file = p.fileName, *dir = p.dirName, *line = p.lineNumber;
    }
    pthread_mutex_unlock(&g_cubin_mu);
    return r == CUPTI_SUCCESS && *line ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------------ setup */

static const char *setup_sass(int device, const char *chip) {
    CUptiResult r;
    static const char *const names[2] = {"smsp__sass_inst_executed", "smsp__sass_thread_inst_executed"};
    CUpti_SassMetrics_Config cfg[2];
    for (int i = 0; i < 2; i++) {
        CUpti_SassMetrics_GetProperties_Params pp = {CUpti_SassMetrics_GetProperties_Params_STRUCT_SIZE};
        pp.pChipName = chip;
        pp.pMetricName = names[i];
        if ((r = d_cuptiSassMetricsGetProperties(&pp)) != CUPTI_SUCCESS) return fail(names[i], r);
        g_deep.metric_id[i] = pp.metric.metricId;
        cfg[i] = (CUpti_SassMetrics_Config){.metricId = pp.metric.metricId,
                                            .outputGranularity = CUPTI_SASS_METRICS_OUTPUT_GRANULARITY_GPU};
    }
    CUpti_SassMetricsSetConfig_Params sp = {CUpti_SassMetricsSetConfig_Params_STRUCT_SIZE};
    sp.numOfMetricConfig = 2;
    sp.pConfigs = cfg;
    sp.deviceIndex = (uint32_t)device;
    if ((r = d_cuptiSassMetricsSetConfig(&sp)) != CUPTI_SUCCESS) return fail("cuptiSassMetricsSetConfig", r);
    return NULL;
}

/* At the engine's start: can the SASS metrics run at all (libcupti has the functions)? Nothing is initialised
 * here: cuptiProfilerInitialize before the program's first CUDA context crashed (SIGSEGV) or failed
 * (CUPTI_ERROR_UNKNOWN) on the H200, and then every SASS record read 0. */
const char *deep_prepare_sass(void) { return resolve(); }

/* On the first range, with its context current: the profiler's initialisation, then the SASS metrics'
 * configuration for the device (configured before a context: CUPTI_ERROR_INVALID_CONTEXT on the H200). The
 * order that gave records matching Nsight Compute there: context, cuptiProfilerInitialize, SetConfig, Enable
 * with lazy patching (eager patching gave no records for modules CUDA had not loaded yet). */
static const char *configure_sass(int device) {
    const char *e = resolve();
    if (e) return e;
    CUptiResult r;
    if (!g_deep.profiler_initialized) {
        CUpti_Profiler_Initialize_Params ip = {CUpti_Profiler_Initialize_Params_STRUCT_SIZE};
        if ((r = d_cuptiProfilerInitialize(&ip)) != CUPTI_SUCCESS) return fail("cuptiProfilerInitialize", r);
        g_deep.profiler_initialized = 1;
    }
    CUpti_Device_GetChipName_Params cp = {CUpti_Device_GetChipName_Params_STRUCT_SIZE};
    cp.deviceIndex = (size_t)device;
    r = d_cuptiDeviceGetChipName(&cp);
    if (r != CUPTI_SUCCESS) return fail("cuptiDeviceGetChipName", r);
    snprintf(g_deep.chip, sizeof g_deep.chip, "%s", cp.pChipName);
    if ((e = setup_sass(device, g_deep.chip))) return e;
    g_deep.sass_configured = 1;
    g_deep.ndevices = device + 1;
    return NULL;
}

static int alloc_pc_buffer(CUpti_PCSamplingData *b, size_t npcs, size_t nreasons) {
    memset(b, 0, sizeof *b);
    b->size = sizeof *b;
    b->collectNumPcs = npcs;
    b->pPcData = calloc(npcs, sizeof *b->pPcData);
    if (!b->pPcData) return -1;
    for (size_t i = 0; i < npcs; i++) {
        b->pPcData[i].size = sizeof b->pPcData[i];
        b->pPcData[i].stallReason = calloc(nreasons, sizeof *b->pPcData[i].stallReason);
        if (!b->pPcData[i].stallReason) return -1;
    }
    return 0;
}

static void free_pc_buffer(CUpti_PCSamplingData *b) {
    for (size_t i = 0; b->pPcData && i < b->collectNumPcs; i++) free(b->pPcData[i].stallReason);
    free(b->pPcData);
    memset(b, 0, sizeof *b);
}

static const char *setup_pc(CUcontext ctx) {
    CUptiResult r;
    CUpti_PCSamplingEnableParams ep = {CUpti_PCSamplingEnableParamsSize, NULL, ctx};
    if ((r = d_cuptiPCSamplingEnable(&ep)) != CUPTI_SUCCESS) return fail("cuptiPCSamplingEnable", r);
    g_deep.pc_enabled = 1;
    size_t n = 0;
    CUpti_PCSamplingGetNumStallReasonsParams np = {CUpti_PCSamplingGetNumStallReasonsParamsSize, NULL, ctx, &n};
    if ((r = d_cuptiPCSamplingGetNumStallReasons(&np)) != CUPTI_SUCCESS)
        return fail("cuptiPCSamplingGetNumStallReasons", r);
    g_deep.reason_index = calloc(n ? n : 1, sizeof *g_deep.reason_index);
    g_deep.reason_names = calloc(n ? n : 1, sizeof *g_deep.reason_names);
    if (!g_deep.reason_index || !g_deep.reason_names) return "out of memory";
    for (size_t i = 0; i < n; i++)
        if (!(g_deep.reason_names[i] = calloc(CUPTI_STALL_REASON_STRING_SIZE, 1))) return "out of memory";
    g_deep.nreasons = n;
    CUpti_PCSamplingGetStallReasonsParams rp = {CUpti_PCSamplingGetStallReasonsParamsSize, NULL, ctx, n,
                                                g_deep.reason_index, g_deep.reason_names};
    if ((r = d_cuptiPCSamplingGetStallReasons(&rp)) != CUPTI_SUCCESS) return fail("cuptiPCSamplingGetStallReasons", r);
    if (alloc_pc_buffer(&g_deep.cfg_buf, g_deep.collect_pcs, n) || alloc_pc_buffer(&g_deep.get_buf, g_deep.collect_pcs, n))
        return "out of memory";
    CUpti_PCSamplingConfigurationInfo info[5];
    memset(info, 0, sizeof info);
    info[0].attributeType = CUPTI_PC_SAMPLING_CONFIGURATION_ATTR_TYPE_COLLECTION_MODE;
    info[0].attributeData.collectionModeData.collectionMode = CUPTI_PC_SAMPLING_COLLECTION_MODE_CONTINUOUS;
    info[1].attributeType = CUPTI_PC_SAMPLING_CONFIGURATION_ATTR_TYPE_ENABLE_START_STOP_CONTROL;
    info[1].attributeData.enableStartStopControlData.enableStartStopControl = 1;
    info[2].attributeType = CUPTI_PC_SAMPLING_CONFIGURATION_ATTR_TYPE_SAMPLING_DATA_BUFFER;
    info[2].attributeData.samplingDataBufferData.samplingDataBuffer = &g_deep.cfg_buf;
    info[3].attributeType = CUPTI_PC_SAMPLING_CONFIGURATION_ATTR_TYPE_SAMPLING_PERIOD;
    info[3].attributeData.samplingPeriodData.samplingPeriod = (uint32_t)g_deep.period_log2;
    info[4].attributeType = CUPTI_PC_SAMPLING_CONFIGURATION_ATTR_TYPE_OUTPUT_DATA_FORMAT;
    info[4].attributeData.outputDataFormatData.outputDataFormat = CUPTI_PC_SAMPLING_OUTPUT_DATA_FORMAT_PARSED;
    CUpti_PCSamplingConfigurationInfoParams cp = {CUpti_PCSamplingConfigurationInfoParamsSize, NULL, ctx, 5, info};
    if ((r = d_cuptiPCSamplingSetConfigurationAttribute(&cp)) != CUPTI_SUCCESS)
        return fail("cuptiPCSamplingSetConfigurationAttribute", r);
    return NULL;
}

/* The primary context (the CUDA runtime's: PyTorch's, JAX's, CuPy's) the program launches on, retained so that
 * it outlives our use of it; NULL when it cannot be told. That is the context of the last traced launch where it
 * is a primary one, else the only active primary context; with several GPUs active and no launch traced yet
 * (an on-demand session before its first window) NULL: the first device's would be a guess, and a window on an
 * idle GPU would report no samples as if there were none to take. */
static CUcontext active_primary_context(void) {
    int n = 0, nactive = 0;
    if (!c_cuDeviceGet || !c_cuDevicePrimaryCtxGetState || !c_cuDevicePrimaryCtxRetain || !c_cuDevicePrimaryCtxRelease)
        return NULL;
    if (c_cuDeviceGetCount(&n) != CUDA_SUCCESS) return NULL; /* CUDA not initialised: nothing started */
    CUcontext hint = atomic_load_explicit(&g_launch_ctx, memory_order_relaxed);
    CUcontext first = NULL;
    CUdevice first_dev = 0;
    for (int i = 0; i < n; i++) {
        CUdevice dev = 0;
        unsigned int flags = 0;
        int active = 0;
        CUcontext ctx = NULL;
        if (c_cuDeviceGet(&dev, i) != CUDA_SUCCESS || c_cuDevicePrimaryCtxGetState(dev, &flags, &active) != CUDA_SUCCESS ||
            !active)
            continue; /* never retain an inactive one: that would create a context on a GPU the program left alone */
        if (c_cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS || !ctx) continue;
        nactive++;
        if (hint && ctx == hint) { /* the one the program launches on */
            if (first) c_cuDevicePrimaryCtxRelease(first_dev);
            first = ctx;
            first_dev = dev;
            nactive = 1;
            break;
        }
        if (!first) {
            first = ctx;
            first_dev = dev;
        } else {
            c_cuDevicePrimaryCtxRelease(dev);
        }
    }
    if (!first) return NULL;
    if (nactive > 1) { /* several GPUs, and no launch says which: not a guess */
        c_cuDevicePrimaryCtxRelease(first_dev);
        return NULL;
    }
    g_deep.retained_primary = 1;
    g_deep.retained_device = first_dev;
    return first;
}

/* Once, on the context current on the calling thread — or, on a thread with none (the capture controller
 * answering a control-file request in a continuous or on-demand session: the GPU suite found every such
 * request refused as engine_unavailable, since the program's context is current only on its own threads),
 * on the program's active primary context, made current here as cudaSetDevice would. Each engine asked for is
 * set up or its error kept in sass_error / pc_error (the other runs on). NULL when at least the setup could be
 * tried, else why not. */
const char *deep_setup(int sass, int pc, int period_log2, size_t collect_pcs) {
    if (g_deep.ready) return NULL;
    const char *e = resolve();
    if (e) return e;
    CUcontext ctx = NULL;
    if (c_cuCtxGetCurrent(&ctx) != CUDA_SUCCESS) return "no CUDA context yet";
    if (!ctx) {
        if (!(ctx = active_primary_context())) return "no CUDA context yet";
        if (c_cuCtxSetCurrent(ctx) != CUDA_SUCCESS) {
            c_cuDevicePrimaryCtxRelease(g_deep.retained_device);
            g_deep.retained_primary = 0;
            return "no CUDA context yet";
        }
    }
    CUdevice dev = 0;
    if (c_cuCtxGetDevice(&dev) != CUDA_SUCCESS) {
        if (g_deep.retained_primary) c_cuDevicePrimaryCtxRelease(g_deep.retained_device);
        g_deep.retained_primary = 0;
        return "cuCtxGetDevice failed";
    }
    g_deep.ctx = ctx;
    g_deep.device = (int)dev;
    g_deep.period_log2 = period_log2;
    g_deep.collect_pcs = collect_pcs ? collect_pcs : 4096;
    if (sass && !g_deep.sass_configured && (e = configure_sass((int)dev)))
        snprintf(g_deep.sass_error, sizeof g_deep.sass_error, "%s", e);
    g_deep.sass_on = sass && g_deep.sass_configured;
    e = NULL;
    if (pc && (e = setup_pc(ctx))) snprintf(g_deep.pc_error, sizeof g_deep.pc_error, "%s", e);
    g_deep.pc_on = pc && !e;
    g_deep.ready = 1;
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ ranges */

static void flush_sass(DeepResult *out);

/* CUPTI's concurrent kernel activity and SASS metrics exclude each other (CUPTI 13.0.85 and 13.5.25, H100
 * and H200; scripts/probes/sass_order.cu): with CONCURRENT_KERNEL on, every SASS count reads 0, and enabling
 * it inside a SASS range fails (CUPTI_ERROR_NOT_COMPATIBLE). The serial KERNEL kind works beside them, and with
 * it CUPTI 13.0.85 patches every function launched in every range (without it, only the first function the
 * process launches in a range was ever patched there). So a SASS range swaps the concurrent kind for the serial
 * one and back at its end: every kernel is still traced (kernels in the range run one at a time, which SASS
 * patching costs more than anyway); out->kernels_serial says so. */
static int kernels_switchable(void) {
    return g_trace.active && g_opts.activity && !g_trace.capture_off && g_trace.kernel_kind != CUPTI_ACTIVITY_KIND_KERNEL;
}

static int serialise_kernel_tracing(void) {
    int traced = g_trace.subscribed && g_opts.activity && g_trace.kernel_kind != CUPTI_ACTIVITY_KIND_KERNEL;
    int live = kernels_switchable();
    if (live) p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    g_trace.sass_range = 1; /* a capture window opening inside the range enables the serial kind (cupti.c) */
    if (live) p_cuptiActivityEnable(CUPTI_ACTIVITY_KIND_KERNEL);
    return traced;
}

static void restore_kernel_tracing(void) {
    int live = kernels_switchable();
    if (live) p_cuptiActivityDisable(CUPTI_ACTIVITY_KIND_KERNEL);
    g_trace.sass_range = 0;
    if (live) p_cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
}

void deep_begin(void) {
    CUptiResult r;
    if (g_deep.in_range) return;
    g_deep.range_sass_error[0] = g_deep.range_pc_error[0] = 0;
    if (g_deep.sass_on) {
        g_deep.kernels_serial = serialise_kernel_tracing();
        /* lazy patching: a function is patched at its first launch in the range (eager patching patched
         * nothing CUDA had not loaded yet, and CUDA loads lazily) */
        CUpti_SassMetricsEnable_Params p = {CUpti_SassMetricsEnable_Params_STRUCT_SIZE};
        p.ctx = g_deep.ctx;
        p.enableLazyPatching = 1;
        r = d_cuptiSassMetricsEnable(&p);
        g_deep.sass_active = r == CUPTI_SUCCESS;
        if (!g_deep.sass_active) { /* no SASS range: tracing goes on as before */
            restore_kernel_tracing();
            g_deep.kernels_serial = 0;
        }
        if (r != CUPTI_SUCCESS)
            snprintf(g_deep.range_sass_error, sizeof g_deep.range_sass_error, "cuptiSassMetricsEnable: %s", cupti_err(r));
    }
    if (g_deep.pc_on) {
        CUpti_PCSamplingStartParams p = {CUpti_PCSamplingStartParamsSize, NULL, g_deep.ctx};
        r = d_cuptiPCSamplingStart(&p);
        g_deep.pc_active = r == CUPTI_SUCCESS;
        if (r != CUPTI_SUCCESS)
            snprintf(g_deep.range_pc_error, sizeof g_deep.range_pc_error, "cuptiPCSamplingStart: %s", cupti_err(r));
    }
    g_deep.in_range = 1;
}

static int push_sass(DeepResult *out, const CUpti_SassMetrics_Data *d, size_t ninst) {
    uint64_t v[2] = {0, 0};
    for (size_t j = 0; j < ninst; j++)
        for (int m = 0; m < 2; m++)
            if (d->pInstanceValues[j].metricId == g_deep.metric_id[m]) v[m] += d->pInstanceValues[j].value;
    /* one record per (function, pc) holds one metric's instances: merge with the previous row of the same PC */
    if (out->nsass && out->sass[out->nsass - 1].crc == d->cubinCrc && out->sass[out->nsass - 1].pc == d->pcOffset &&
        !strcmp(out->sass[out->nsass - 1].function, d->functionName ? d->functionName : "")) {
        out->sass[out->nsass - 1].inst += v[0];
        out->sass[out->nsass - 1].thread_inst += v[1];
        return 0;
    }
    if (out->nsass == out->sass_cap) {
        size_t cap = out->sass_cap ? 2 * out->sass_cap : 1024;
        SassRow *s = realloc(out->sass, cap * sizeof *s);
        if (!s) return -1;
        out->sass = s, out->sass_cap = cap;
    }
    out->sass[out->nsass++] = (SassRow){d->cubinCrc, strdup(d->functionName ? d->functionName : ""), d->pcOffset, v[0], v[1]};
    return 0;
}

/* Read and reset the SASS counts CUPTI holds for the context. */
static void flush_sass(DeepResult *out) {
    CUptiResult r;
    CUpti_SassMetricsGetDataProperties_Params gp = {CUpti_SassMetricsGetDataProperties_Params_STRUCT_SIZE};
    gp.ctx = g_deep.ctx;
    r = d_cuptiSassMetricsGetDataProperties(&gp);
    if (r != CUPTI_SUCCESS) {
        snprintf(out->sass_error, sizeof out->sass_error, "cuptiSassMetricsGetDataProperties: %s", cupti_err(r));
        return;
    }
    if (!gp.numOfPatchedInstructionRecords || !gp.numOfInstances) return;
    size_t n = gp.numOfPatchedInstructionRecords, k = gp.numOfInstances;
    CUpti_SassMetrics_Data *d = calloc(n, sizeof *d);
    CUpti_SassMetrics_InstanceValue *vals = calloc(n * k, sizeof *vals);
    if (d && vals) {
        for (size_t i = 0; i < n; i++) d[i].structSize = sizeof d[i], d[i].pInstanceValues = vals + i * k;
        CUpti_SassMetricsFlushData_Params fp = {CUpti_SassMetricsFlushData_Params_STRUCT_SIZE};
        fp.ctx = g_deep.ctx;
        fp.numOfPatchedInstructionRecords = n;
        fp.numOfInstances = k;
        fp.pMetricsData = d;
        r = d_cuptiSassMetricsFlushData(&fp);
        if (r != CUPTI_SUCCESS)
            snprintf(out->sass_error, sizeof out->sass_error, "cuptiSassMetricsFlushData: %s", cupti_err(r));
        for (size_t i = 0; r == CUPTI_SUCCESS && i < n; i++)
            if (push_sass(out, &d[i], k)) snprintf(out->sass_error, sizeof out->sass_error, "out of memory");
        for (size_t i = 0; i < n; i++) free((void *)d[i].functionName);
    } else {
        snprintf(out->sass_error, sizeof out->sass_error, "out of memory for %zu SASS records", n);
    }
    free(d);
    free(vals);
}

static void end_sass(DeepResult *out) {
    flush_sass(out);
    CUpti_SassMetricsDisable_Params dp = {CUpti_SassMetricsDisable_Params_STRUCT_SIZE};
    dp.ctx = g_deep.ctx;
    CUptiResult r = d_cuptiSassMetricsDisable(&dp);
    out->sass_dropped = r == CUPTI_SUCCESS ? dp.numOfDroppedRecords : 0;
    restore_kernel_tracing();
    out->kernels_serial = g_deep.kernels_serial;
    g_deep.kernels_serial = 0;
    g_deep.sass_active = 0;
}

static const char *reason_name(uint32_t index) {
    for (size_t i = 0; i < g_deep.nreasons; i++)
        if (g_deep.reason_index[i] == index) return g_deep.reason_names[i];
    return NULL;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (char *const *)a, y = (uintptr_t) * (char *const *)b;
    return x < y ? -1 : x > y;
}

/* Move a filled PC-sampling buffer's rows into out, and free the function names CUPTI allocated. */
static int take_pc(DeepResult *out, CUpti_PCSamplingData *b) {
    out->pc_samples += b->totalSamples;
    out->pc_dropped += b->droppedSamples;
    out->pc_non_user += b->nonUsrKernelsTotalSamples;
    out->pc_buffer_full |= b->hardwareBufferFull;
    for (size_t i = 0; i < b->totalNumPcs && i < b->collectNumPcs; i++) {
        CUpti_PCSamplingPCData *p = &b->pPcData[i];
        for (size_t j = 0; j < p->stallReasonCount; j++) {
            if (!p->stallReason[j].samples) continue;
            if (out->npc == out->pc_cap) {
                size_t cap = out->pc_cap ? 2 * out->pc_cap : 1024;
                PcRow *v = realloc(out->pc, cap * sizeof *v);
                if (!v) return -1;
                out->pc = v, out->pc_cap = cap;
            }
            const char *reason = reason_name(p->stallReason[j].pcSamplingStallReasonIndex);
            out->pc[out->npc++] = (PcRow){p->cubinCrc, strdup(p->functionName ? p->functionName : ""), p->pcOffset,
                                          reason ? reason : "unknown", p->stallReason[j].samples};
        }
    }
    /* The function names are not freed here: CUPTI's sample frees them at its end, but freeing them after each
     * read was a double free on the H200 (a whole-session range read over several calls): CUPTI keeps and
     * reuses them. What stays allocated is one name per sampled function per read, bounded by the program's
     * kernels. */
    for (size_t i = 0; i < b->collectNumPcs; i++) b->pPcData[i].functionName = NULL, b->pPcData[i].stallReasonCount = 0;
    b->totalNumPcs = b->remainingNumPcs = 0;
    b->totalSamples = b->droppedSamples = b->nonUsrKernelsTotalSamples = 0;
    b->hardwareBufferFull = 0;
    return 0;
}

static void end_pc(DeepResult *out) {
    CUptiResult r;
    CUpti_PCSamplingStopParams sp = {CUpti_PCSamplingStopParamsSize, NULL, g_deep.ctx};
    if ((r = d_cuptiPCSamplingStop(&sp)) != CUPTI_SUCCESS) {
        snprintf(out->pc_error, sizeof out->pc_error, "cuptiPCSamplingStop: %s", cupti_err(r));
        g_deep.pc_active = 0;
        return;
    }
    g_deep.pc_active = 0;
    CUpti_PCSamplingGetDataParams gp = {CUpti_PCSamplingGetDataParamsSize, NULL, g_deep.ctx, &g_deep.get_buf};
    for (int round = 0; round < 1024; round++) { /* bounded: a range never loops forever here */
        r = d_cuptiPCSamplingGetData(&gp);
        if (r != CUPTI_SUCCESS) {
            snprintf(out->pc_error, sizeof out->pc_error, "cuptiPCSamplingGetData: %s", cupti_err(r));
            break;
        }
        size_t remaining = g_deep.get_buf.remainingNumPcs, got = g_deep.get_buf.totalNumPcs;
        if (take_pc(out, &g_deep.get_buf)) {
            snprintf(out->pc_error, sizeof out->pc_error, "out of memory");
            break;
        }
        if (!remaining || !got) break;
    }
}

/* Close the range: wait for the context's work (the samples of kernels still running), then collect. Runs on
 * any thread (the context is made current here). */
void deep_end(DeepResult *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->sass_error, sizeof out->sass_error, "%s", g_deep.range_sass_error);
    snprintf(out->pc_error, sizeof out->pc_error, "%s", g_deep.range_pc_error);
    if (!g_deep.in_range) return;
    c_cuCtxSetCurrent(g_deep.ctx);
    CUresult cr = c_cuCtxSynchronize();
    if (cr != CUDA_SUCCESS) snprintf(out->sync_error, sizeof out->sync_error, "cuCtxSynchronize: CUDA error %d", (int)cr);
    if (g_deep.sass_active) end_sass(out);
    if (g_deep.pc_active) end_pc(out);
    g_deep.in_range = 0;
}

void deep_result_free(DeepResult *r) {
    for (size_t i = 0; i < r->nsass; i++) free(r->sass[i].function);
    for (size_t i = 0; i < r->npc; i++) free(r->pc[i].function);
    free(r->sass);
    free(r->pc);
    memset(r, 0, sizeof *r);
}

/* Module cubins are watched (for source lines) from the first deep engine's start: through the tracing
 * subscriber when there is one, else through a subscriber of the deep engines' own (tracing off). */
const char *deep_watch_modules(size_t cubin_budget) {
    static char err[160];
    const char *e = resolve();
    if (e) return e;
    g_deep.cubin_budget = cubin_budget;
    g_deep.watch_modules = 1;
    CUpti_SubscriberHandle sub = g_trace.subscribed ? g_trace.sub : NULL;
    if (!sub) {
        CUptiResult r = p_cuptiSubscribe(&g_deep.own_sub, (CUpti_CallbackFunc)on_api, NULL);
        if (r != CUPTI_SUCCESS) {
            g_deep.own_sub = NULL;
            snprintf(err, sizeof err, "cuptiSubscribe (module cubins for source lines): %s", cupti_err(r));
            return err;
        }
        sub = g_deep.own_sub;
    }
    CUptiResult r = p_cuptiEnableCallback(1, sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_MODULE_LOADED);
    if (r != CUPTI_SUCCESS) {
        snprintf(err, sizeof err, "module-loaded callback: %s", cupti_err(r));
        return err;
    }
    return NULL;
}

/* At shutdown: disable both engines (CUPTI joins its PC-sampling threads and puts what it still held in the
 * configured buffer: `late` gets those rows) and forget the cubins. */
void deep_teardown(DeepResult *late) {
    memset(late, 0, sizeof *late);
    if (g_deep.in_range) deep_end(late), deep_result_free(late);
    if (g_deep.ready && g_deep.pc_enabled) {
        CUpti_PCSamplingDisableParams p = {CUpti_PCSamplingDisableParamsSize, NULL, g_deep.ctx};
        if (d_cuptiPCSamplingDisable(&p) == CUPTI_SUCCESS && g_deep.cfg_buf.totalNumPcs) take_pc(late, &g_deep.cfg_buf);
    }
    for (int d = g_deep.device; g_deep.sass_configured && d < g_deep.ndevices; d++) {
        CUpti_SassMetricsUnsetConfig_Params p = {CUpti_SassMetricsUnsetConfig_Params_STRUCT_SIZE};
        p.deviceIndex = (uint32_t)d;
        d_cuptiSassMetricsUnsetConfig(&p);
    }
    if (g_deep.own_sub) p_cuptiUnsubscribe(g_deep.own_sub);
    else if (g_trace.subscribed && g_deep.watch_modules)
        p_cuptiEnableCallback(0, g_trace.sub, CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_MODULE_LOADED);
    if (g_deep.retained_primary) c_cuDevicePrimaryCtxRelease(g_deep.retained_device);
    free_pc_buffer(&g_deep.cfg_buf);
    free_pc_buffer(&g_deep.get_buf);
    for (size_t i = 0; i < g_deep.nreasons; i++) free(g_deep.reason_names[i]);
    free(g_deep.reason_names);
    free(g_deep.reason_index);
    pthread_mutex_lock(&g_cubin_mu);
    for (size_t i = 0; i < g_ncubins; i++) free(g_cubins[i].data);
    free(g_cubins);
    g_cubins = NULL;
    g_ncubins = g_cubin_cap = g_cubin_bytes = 0;
    pthread_mutex_unlock(&g_cubin_mu);
    memset(&g_deep, 0, sizeof g_deep);
}
#endif

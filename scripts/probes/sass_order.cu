// Build and run on the GPU machine: nvcc -arch=sm_90 -lineinfo -o /tmp/probe scripts/probes/sass_order.cu -L/usr/local/cuda/lib64 -lcupti -lcuda && /tmp/probe after activity
// Results: docs/gpu-runs/session10-sass-order.txt.
// Probe: which order of CUPTI calls gives SASS metrics records (issue #19). Flags (any order):
//   init_first   cuptiProfilerInitialize before the CUDA context exists (else after)
//   cfg_first    cuptiSassMetricsSetConfig before the context (else after)
//   activity     CUPTI activity CONCURRENT_KERNEL on (as gpufl tracing does)
//   subscribe    a callback subscriber with the runtime API domain on
//   prelaunch    each kernel launched once before cuptiSassMetricsEnable
//   eager        enableLazyPatching = 0
//   sync_before_flush  cudaDeviceSynchronize before GetDataProperties (else only the kernel's own sync)
//   ranges=N     N ranges (default 1): parity, parity again, then uniform (a function not launched before), ...
//   keep         across ranges: Enable once, flush at each range's end (else Enable/Disable per range)
//   reconfig     across ranges: UnsetConfig + SetConfig between ranges
//   eager_later  ranges after the first enable with enableLazyPatching = 0
//   both         each range launches parity and uniform (records counted per function)
//   onemetric    only smsp__sass_inst_executed configured
//   uniform_first  with both: uniform launched before parity
//   sync_between   with both: cudaDeviceSynchronize between the two kernels
//   pause_each   kernel activity off for each range and back on after it, one kernel traced between ranges (gpufl's way)
#include <cuda.h>
#include <cuda_runtime.h>
#include <cupti.h>
#include <cupti_profiler_target.h>
#include <cupti_sass_metrics.h>
#include <cupti_target.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__global__ void parity(float *out, float a) {
  float v = threadIdx.x;
  if (threadIdx.x & 1) {
#pragma unroll 1
    for (int i = 0; i < 64; ++i) v = fmaf(v, a, 0.5f);
  } else {
#pragma unroll 1
    for (int i = 0; i < 64; ++i) v = __sinf(v) * a;
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

__global__ void uniform(float *out, float a) {
  float v = threadIdx.x;
#pragma unroll 1
  for (int i = 0; i < 64; ++i) v = fmaf(v, a, 0.5f);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

static int num(int argc, char **argv, const char *f, int dflt) {
  size_t n = strlen(f);
  for (int i = 1; i < argc; i++)
    if (!strncmp(argv[i], f, n) && argv[i][n] == '=') return atoi(argv[i] + n + 1);
  return dflt;
}

static int has(int argc, char **argv, const char *f) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], f)) return 1;
  return 0;
}
static const char *err(CUptiResult r) {
  const char *s = "?";
  cuptiGetResultString(r, &s);
  return s;
}
#define TRY(call)                                                        \
  do {                                                                   \
    CUptiResult r_ = (call);                                             \
    printf("  %-40s %s\n", #call, r_ == CUPTI_SUCCESS ? "ok" : err(r_)); \
  } while (0)

static void CUPTIAPI buf_req(uint8_t **b, size_t *sz, size_t *max) {
  *sz = 1 << 20;
  *b = (uint8_t *)aligned_alloc(8, *sz);
  *max = 0;
}
static int g_kernels;
static void CUPTIAPI buf_done(CUcontext, uint32_t, uint8_t *b, size_t, size_t valid) {
  CUpti_Activity *rec = NULL;
  while (cuptiActivityGetNextRecord(b, valid, &rec) == CUPTI_SUCCESS)
    if (rec->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || rec->kind == CUPTI_ACTIVITY_KIND_KERNEL) g_kernels++;
  free(b);
}
static void CUPTIAPI on_cb(void *, CUpti_CallbackDomain, CUpti_CallbackId, const void *) {}

static CUpti_SassMetrics_Config g_cfg[2];
static uint64_t g_ids[2];
static int g_nmetrics = 2;
static void set_config(void) {
  CUpti_Device_GetChipName_Params cp = {CUpti_Device_GetChipName_Params_STRUCT_SIZE};
  cp.deviceIndex = 0;
  TRY(cuptiDeviceGetChipName(&cp));
  const char *names[2] = {"smsp__sass_inst_executed", "smsp__sass_thread_inst_executed"};
  for (int i = 0; i < g_nmetrics; i++) {
    CUpti_SassMetrics_GetProperties_Params pp = {CUpti_SassMetrics_GetProperties_Params_STRUCT_SIZE};
    pp.pChipName = cp.pChipName;
    pp.pMetricName = names[i];
    TRY(cuptiSassMetricsGetProperties(&pp));
    g_ids[i] = pp.metric.metricId;
    g_cfg[i].metricId = pp.metric.metricId;
    g_cfg[i].outputGranularity = CUPTI_SASS_METRICS_OUTPUT_GRANULARITY_GPU;
  }
  CUpti_SassMetricsSetConfig_Params sp = {CUpti_SassMetricsSetConfig_Params_STRUCT_SIZE};
  sp.pConfigs = g_cfg;
  sp.numOfMetricConfig = g_nmetrics;
  sp.deviceIndex = 0;
  TRY(cuptiSassMetricsSetConfig(&sp));
}

int main(int argc, char **argv) {
  int init_first = has(argc, argv, "init_first"), cfg_first = has(argc, argv, "cfg_first");
  if (has(argc, argv, "onemetric")) g_nmetrics = 1;
  printf("variant:");
  for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
  printf("\n");
  if (has(argc, argv, "subscribe")) {
    CUpti_SubscriberHandle s;
    TRY(cuptiSubscribe(&s, (CUpti_CallbackFunc)on_cb, NULL));
    TRY(cuptiEnableDomain(1, s, CUPTI_CB_DOMAIN_RUNTIME_API));
  }
  CUpti_ActivityKind kind = has(argc, argv, "kernel_kind") ? CUPTI_ACTIVITY_KIND_KERNEL : CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
  if (has(argc, argv, "activity")) {
    TRY(cuptiActivityRegisterCallbacks(buf_req, buf_done));
    TRY(cuptiActivityEnable(kind));
  }
  CUpti_Profiler_Initialize_Params ip = {CUpti_Profiler_Initialize_Params_STRUCT_SIZE};
  if (init_first) TRY(cuptiProfilerInitialize(&ip));
  if (cfg_first) set_config();
  float *out;
  cudaMalloc(&out, 1 << 22);  // the primary context
  CUcontext ctx;
  cuCtxGetCurrent(&ctx);
  if (!init_first) TRY(cuptiProfilerInitialize(&ip));
  if (!cfg_first) set_config();
  if (has(argc, argv, "prelaunch")) {
    parity<<<1024, 256>>>(out, 1.0001f);
    uniform<<<1024, 256>>>(out, 1.0001f);
    cudaDeviceSynchronize();
  }
  int ranges = num(argc, argv, "ranges", 1), keep = has(argc, argv, "keep");
  unsigned long long inst = 0, thr = 0;
  size_t records = 0;
  if (has(argc, argv, "pause_activity")) TRY(cuptiActivityDisable(kind));
  for (int range = 0; range < ranges; range++) {
    if (range && has(argc, argv, "reconfig")) {
      CUpti_SassMetricsUnsetConfig_Params up = {CUpti_SassMetricsUnsetConfig_Params_STRUCT_SIZE};
      up.deviceIndex = 0;
      TRY(cuptiSassMetricsUnsetConfig(&up));
      set_config();
    }
    if (has(argc, argv, "pause_each")) TRY(cuptiActivityDisable(kind));
    if (!range || !keep) {
      CUpti_SassMetricsEnable_Params ep = {CUpti_SassMetricsEnable_Params_STRUCT_SIZE};
      ep.ctx = ctx;
      ep.enableLazyPatching = !has(argc, argv, "eager") && !(range && has(argc, argv, "eager_later"));
      TRY(cuptiSassMetricsEnable(&ep));
    }
    if (!range && has(argc, argv, "activity_late")) {
      TRY(cuptiActivityRegisterCallbacks(buf_req, buf_done));
      TRY(cuptiActivityEnable(kind));
    }
    int both = has(argc, argv, "both");
    const char *kname = both ? "parity+uniform" : range % 3 == 2 ? "uniform" : "parity";
    int ufirst = has(argc, argv, "uniform_first"), sync_between = has(argc, argv, "sync_between");
    if (both && ufirst)
      for (int i = 0; i < 3; i++) uniform<<<1024, 256>>>(out, 1.0001f);
    if (sync_between) printf("  first kernel: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
    for (int i = 0; i < 3; i++) {
      if (both || range % 3 != 2) parity<<<1024, 256>>>(out, 1.0001f);
      if (sync_between && !i) printf("  parity: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
      if ((both && !ufirst) || (!both && range % 3 == 2)) uniform<<<1024, 256>>>(out, 1.0001f);
    }
    printf("  launch: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
    CUpti_SassMetricsGetDataProperties_Params gp = {CUpti_SassMetricsGetDataProperties_Params_STRUCT_SIZE};
    gp.ctx = ctx;
    TRY(cuptiSassMetricsGetDataProperties(&gp));
    printf("  instances %zu records %zu\n", (size_t)gp.numOfInstances, (size_t)gp.numOfPatchedInstructionRecords);
    unsigned long long ri = 0, rt = 0, ru = 0;
    if (gp.numOfInstances && gp.numOfPatchedInstructionRecords) {
      size_t n = gp.numOfPatchedInstructionRecords, k = gp.numOfInstances;
      CUpti_SassMetrics_Data *d = (CUpti_SassMetrics_Data *)calloc(n, sizeof *d);
      for (size_t i = 0; i < n; i++) {
        d[i].structSize = sizeof d[i];
        d[i].pInstanceValues = (CUpti_SassMetrics_InstanceValue *)calloc(k, sizeof(CUpti_SassMetrics_InstanceValue));
      }
      CUpti_SassMetricsFlushData_Params fp = {CUpti_SassMetricsFlushData_Params_STRUCT_SIZE};
      fp.ctx = ctx;
      fp.numOfInstances = k;
      fp.numOfPatchedInstructionRecords = n;
      fp.pMetricsData = d;
      TRY(cuptiSassMetricsFlushData(&fp));
      for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k; j++) {
          if (d[i].pInstanceValues[j].metricId == g_ids[0]) ri += d[i].pInstanceValues[j].value;
          if (d[i].pInstanceValues[j].metricId == g_ids[0] && d[i].functionName && strstr(d[i].functionName, "uniform"))
            ru += d[i].pInstanceValues[j].value;
          if (d[i].pInstanceValues[j].metricId == g_ids[1]) rt += d[i].pInstanceValues[j].value;
        }
      if (n) printf("  first record: %s pc %u\n", d[0].functionName ? d[0].functionName : "(null)", d[0].pcOffset);
      records += n;
    }
    printf("RANGE %d %s records=%zu inst=%llu (uniform %llu) divergence=%.3f\n", range, kname,
           (size_t)gp.numOfPatchedInstructionRecords, ri, ru, ri ? (double)rt / ri : 0.0);
    inst += ri, thr += rt;
    if (!keep || range == ranges - 1) {
      CUpti_SassMetricsDisable_Params dp = {CUpti_SassMetricsDisable_Params_STRUCT_SIZE};
      dp.ctx = ctx;
      TRY(cuptiSassMetricsDisable(&dp));
      printf("  dropped %zu\n", (size_t)dp.numOfDroppedRecords);
    }
    if (has(argc, argv, "pause_each")) {
      TRY(cuptiActivityEnable(kind));
      uniform<<<4, 32>>>(out, 1.0f);
      cudaDeviceSynchronize();
    }
  }
  if (has(argc, argv, "pause_activity")) TRY(cuptiActivityEnable(kind));
  CUpti_SassMetricsUnsetConfig_Params up = {CUpti_SassMetricsUnsetConfig_Params_STRUCT_SIZE};
  up.deviceIndex = 0;
  TRY(cuptiSassMetricsUnsetConfig(&up));
  if (has(argc, argv, "activity") || has(argc, argv, "activity_late")) {
    cuptiActivityFlushAll(1);
    printf("  activity kernels %d\n", g_kernels);
  }
  printf("RESULT records=%zu divergence=%.3f\n", records, inst ? (double)thr / inst : 0.0);
  return 0;
}

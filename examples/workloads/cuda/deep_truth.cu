// Kernels with known behaviour, the ground truth for the deep engines (issue #19): designed warp divergence
// (all lanes; two-way by lane parity; four-way by lane quad; half the warp leaving early) and one memory-bound
// and one compute-bound kernel for PC sampling's stall reasons. Built with -lineinfo so PCs map to lines here.
// Loaded by deep_truth.py through ctypes; every entry point launches, synchronises and returns a CUDA error code.
#include <cuda_runtime.h>

#define LOOP 64

// Each branch runs a loop of its own instructions, so the compiler cannot merge the branches into one
// predicated loop (with the same loop on a different constant, nvcc did, and ncu read 32: no divergence).
__device__ __forceinline__ float loop_fma(float v, float a) {
#pragma unroll 1
  for (int i = 0; i < LOOP; ++i) v = fmaf(v, a, 0.5f);
  return v;
}
__device__ __forceinline__ float loop_mul(float v, float a) {
#pragma unroll 1
  for (int i = 0; i < LOOP; ++i) v = v * a - 0.25f * v;
  return v;
}
__device__ __forceinline__ float loop_sin(float v, float a) {
#pragma unroll 1
  for (int i = 0; i < LOOP; ++i) v = __sinf(v) * a;
  return v;
}
__device__ __forceinline__ float loop_sqrt(float v, float a) {
#pragma unroll 1
  for (int i = 0; i < LOOP; ++i) v = sqrtf(fabsf(v)) + a;
  return v;
}

__global__ void div_uniform(float *out, float a) {
  float v = threadIdx.x;
  v = loop_fma(v, a);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

__global__ void div_parity(float *out, float a) {
  float v = threadIdx.x;
  if (threadIdx.x & 1) v = loop_fma(v, a);
  else v = loop_sin(v, a);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

__global__ void div_quad(float *out, float a) {
  float v = threadIdx.x;
  switch (threadIdx.x & 3) {
    case 0: v = loop_fma(v, a); break;
    case 1: v = loop_mul(v, a); break;
    case 2: v = loop_sin(v, a); break;
    default: v = loop_sqrt(v, a); break;
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

__global__ void div_early_exit(float *out, float a) {
  if ((threadIdx.x & 31) >= 16) return;
  float v = threadIdx.x;
  v = loop_fma(v, a);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Streams through memory: each load's latency is what warps wait on (long scoreboard).
__global__ void mem_bound(const float *__restrict__ x, float *__restrict__ y, size_t n, float a) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = a * x[i] + y[i];
}

// Dependent FMA chains in registers: warps wait on the math pipes, never on memory.
__global__ void compute_bound(float *out, float a, int iters) {
  float v0 = threadIdx.x, v1 = v0 + 1.f, v2 = v0 + 2.f, v3 = v0 + 3.f;
  for (int i = 0; i < iters; ++i) {
    v0 = fmaf(v0, a, 0.5f); v1 = fmaf(v1, a, 0.5f); v2 = fmaf(v2, a, 0.5f); v3 = fmaf(v3, a, 0.5f);
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = v0 + v1 + v2 + v3;
}

static float *g_out, *g_x, *g_y;
static size_t g_n;

extern "C" int deep_truth_setup(size_t n_floats) {
  g_n = n_floats;
  cudaError_t e = cudaMalloc(&g_out, 1 << 24);
  if (e == cudaSuccess) e = cudaMalloc(&g_x, n_floats * sizeof(float));
  if (e == cudaSuccess) e = cudaMalloc(&g_y, n_floats * sizeof(float));
  if (e == cudaSuccess) e = cudaMemset(g_x, 0, n_floats * sizeof(float));
  if (e == cudaSuccess) e = cudaMemset(g_y, 0, n_floats * sizeof(float));
  return (int)e;
}

// kind: 0 uniform, 1 parity, 2 quad, 3 early_exit, 4 mem_bound, 5 compute_bound; `launches` back to back.
extern "C" int deep_truth_run(int kind, int launches) {
  const int blocks = 1024, threads = 256;  // 1024 x 256 floats = 1 MiB of g_out
  for (int i = 0; i < launches; ++i) {
    switch (kind) {
      case 0: div_uniform<<<blocks, threads>>>(g_out, 1.0001f); break;
      case 1: div_parity<<<blocks, threads>>>(g_out, 1.0001f); break;
      case 2: div_quad<<<blocks, threads>>>(g_out, 1.0001f); break;
      case 3: div_early_exit<<<blocks, threads>>>(g_out, 1.0001f); break;
      case 4: mem_bound<<<132 * 8, 512>>>(g_x, g_y, g_n, 1.0001f); break;
      case 5: compute_bound<<<blocks, threads>>>(g_out, 1.0001f, 4096); break;
      default: return -1;
    }
  }
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  return (int)e;
}

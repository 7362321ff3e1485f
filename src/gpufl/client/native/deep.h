/* deep.h — the deep engines' state and results (deep.c), shared with their Python binding (py_deep.c). */
#ifndef GPUFL_DEEP_H
#define GPUFL_DEEP_H
#include <cupti_pcsampling.h>

#pragma GCC visibility push(hidden)

typedef struct {
    uint64_t crc;
    char *function; /* mangled; owned */
    uint64_t pc;
    uint64_t inst, thread_inst;
} SassRow;

typedef struct {
    uint64_t crc;
    char *function; /* mangled; owned */
    uint64_t pc;
    const char *reason; /* CUPTI's stall reason name (g_deep's table) */
    uint64_t samples;
} PcRow;

/* One range's data: rows of both engines, PC sampling's totals, and why an engine gave nothing. */
typedef struct {
    SassRow *sass;
    size_t nsass, sass_cap;
    PcRow *pc;
    size_t npc, pc_cap;
    uint64_t pc_samples, pc_dropped, pc_non_user, sass_dropped;
    int pc_buffer_full, kernels_serial; /* kernels_serial: kernels in the range traced by the serial kind (SASS) */
    char sass_error[200], pc_error[200], sync_error[120];
} DeepResult;

typedef struct {
    int ready, profiler_initialized, sass_on, pc_on, sass_configured, pc_enabled, in_range, sass_active, pc_active, watch_modules;
    int kernels_serial; /* the range swapped the concurrent kernel kind for the serial one */
    CUcontext ctx;
    int retained_primary; /* ctx is a device's primary context retained by deep_setup: released at teardown */
    CUdevice retained_device;
    int device, period_log2, ndevices;
    size_t collect_pcs, cubin_budget;
    uint64_t cubins_skipped;
    uint64_t metric_id[2];
    size_t nreasons;
    uint32_t *reason_index;
    char **reason_names;
    CUpti_PCSamplingData cfg_buf, get_buf;
    CUpti_SubscriberHandle own_sub;
    char chip[64];
    char err[240], sass_error[240], pc_error[240], range_sass_error[200], range_pc_error[200];
} DeepState;

extern DeepState g_deep;

const char *deep_watch_modules(size_t cubin_budget);
const char *deep_prepare_sass(void);
const char *deep_setup(int sass, int pc, int period_log2, size_t collect_pcs);
void deep_begin(void);
void deep_end(DeepResult *out);
void deep_result_free(DeepResult *r);
void deep_teardown(DeepResult *late);
int deep_source_line(uint64_t crc, const char *function, uint64_t pc, char **file, char **dir, uint32_t *line);

#pragma GCC visibility pop
#endif

/* gpufl_native.h — what the native record path's C files share: the JSON buffer, the writer, the CUPTI
 * entry points, the tracing state and the options. Internal to gpufl.client._native / _cuda_inject.
 *
 * Why C, and the shape of the record path (docs/client-internals.md has the file map):
 *   - the launch callback (sites.c, on the user's launching thread) stores the API enter time, thread, open
 *     scope and, when asked, an interned Python call stack into a lock-free ring indexed by correlation id;
 *   - CUPTI's buffer thread (buffers.c) parses activity records, joins them with their launch site, interns
 *     launch configurations (records.c: occupancy computed once per configuration), formats JSON lines and
 *     appends them to the device stream's writer;
 *   - the writer (writer.c, a C thread) owns segments, rotation, `seq` and per-segment dictionary records,
 *     and hands bytes to the OS every flush interval, so a SIGKILL loses at most that much.
 * Receiving CUPTI records as Python objects cost +12-35% per step on a launch-bound training loop (the
 * decoder and the launching thread fight for the GIL; docs/benchmarks.md): here nothing per record touches
 * Python. Python keeps the control plane: options, device properties, scopes, NVML, lifecycle, and the few
 * records it writes itself (session_start/end, notices) go through Writer.emit_line.
 *
 * libcupti is loaded at run time (dlopen), so this compiles and is unit-tested without a GPU: the CUPTI
 * headers are only needed at build time, and recorded raw activity buffers replay through the same parser.
 *
 * Built twice from the same files (setup.py and scripts/build_native.sh read native/sources.txt): as the
 * Python extension, and with -DGPUFL_INJECTION, without Python, as the CUDA injection library
 * (CUDA_INJECTION64_PATH) for `gpufl run -- ./app`. The Python-only files compile to nothing there.
 */
#ifndef GPUFL_NATIVE_H
#define GPUFL_NATIVE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#ifndef GPUFL_INJECTION
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define WRITER_HEAD PyObject_HEAD
#else
#define WRITER_HEAD
#endif

/* Python call stacks are read from CPython's frame structs (sites.c), whose layout these versions share. */
#if !defined(GPUFL_INJECTION) && PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000
#define GPUFL_FRAMES 1
#else
#define GPUFL_FRAMES 0
#endif

#include <cupti.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cbids.h"
#include "generated_nvtx_meta.h" /* parameter structs of the NVTX callbacks (CUPTI ships it) */

/* Everything below is shared between this library's files only: hidden, so calls and thread-local reads
 * across files cost what they cost inside one file (no PLT, no GOT). */
#pragma GCC visibility push(hidden)

/* ------------------------------------------------------------------------------------------------ JSON buffer */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

int sb_grow(sbuf *b, size_t extra); /* jsonbuf.c */
void sb_f(sbuf *b, double v, int decimals);
void sb_json_str(sbuf *b, const char *s, size_t n);

static inline int sb_reserve(sbuf *b, size_t extra) { return b->n + extra <= b->cap ? 0 : sb_grow(b, extra); }

static inline void sb_put(sbuf *b, const char *s, size_t n) {
    if (sb_reserve(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
#define SB_LIT(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

static inline void sb_u64(sbuf *b, uint64_t v) {
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_put(b, tmp + i, (size_t)(24 - i));
}

static inline void sb_i64(sbuf *b, int64_t v) {
    if (v < 0) {
        SB_LIT(b, "-");
        sb_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        sb_u64(b, (uint64_t)v);
    }
}

static inline void sb_key_u64(sbuf *b, const char *key, size_t klen, uint64_t v) {
    sb_put(b, key, klen);
    sb_u64(b, v);
}
#define KEY_U64(b, lit, v) sb_key_u64((b), (lit), sizeof(lit) - 1, (uint64_t)(v))
#define KEY_I64(b, lit, v)                   \
    do {                                     \
        sb_put((b), (lit), sizeof(lit) - 1); \
        sb_i64((b), (int64_t)(v));           \
    } while (0)

/* ------------------------------------------------------------------------------------------------ small utilities */

static inline int64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline uint64_t hash64(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

static inline uint64_t hash_str(uint64_t h, const char *s) {
    while (*s) h = (h ^ (unsigned char)*s++) * 0x100000001b3ULL;
    return h;
}

/* Thread-locals shared between files: local-dynamic, as a file's own static ones are, so the launch callback
 * reads them all from one __tls_get_addr result (the default model for an extern would call it per variable). */
#define GPUFL_TLS __thread __attribute__((tls_model("local-dynamic")))

extern GPUFL_TLS uint32_t tls_tid; /* sites.c */
static inline uint32_t thread_id(void) {
    if (!tls_tid) tls_tid = (uint32_t)syscall(SYS_gettid);
    return tls_tid;
}

/* ------------------------------------------------------------------------------------------------ writer (writer.c) */

enum { DK_LAUNCH, DK_STACK, DK_KERNEL, DK_SCOPE, DK_THREAD, DK_N };
extern const char *const DK_NAMES[DK_N];

typedef struct {
    char *line; /* the whole dict line, with "seq": at seq_at */
    size_t n, seq_at;
    int64_t seg; /* the segment index it was last written into, -1: never */
} DictEnt;

typedef struct {
    DictEnt *v;
    size_t n, cap;
} DictVec;

enum { DROP_KERNEL, DROP_MEMCPY, DROP_MEMSET, DROP_CUPTI, DROP_SYNC, DROP_N };

typedef struct {
    WRITER_HEAD
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *prefix, *suffix;   /* segment path = prefix + %06d + suffix */
    char *head;              /* {"type":" */
    char *envelope;          /* ","session_id":"S","stream":"X","seq": */
    size_t envelope_n;
    char *stream_mark;       /* "stream":"X" (where Python-encoded lines get their seq) */
    size_t stream_mark_n;
    int fd;
    int64_t index;
    uint64_t seg_size;
    int64_t opened_ns;
    uint64_t max_bytes;
    int64_t max_age_ns;
    int64_t interval_ns;
    size_t max_pending;
    sbuf pending;
    uint64_t seq;
    DictVec dicts[DK_N];
    uint64_t drop_pending, drop_first, drop_last, dropped_total, drop_by[DROP_N];
    sbuf closed; /* "path\0size\0" pairs waiting for the disk-budget callback */
    void *on_segment_closed; /* a Python callable (not in the injection build) */
    pthread_t thread;
    int thread_started, stopping;
    int error;
    char errmsg[200];
    uint64_t segments_written, bytes_written;
    uint64_t lost;       /* lines not written because writing failed (disk full, I/O error) */
    _Atomic int64_t busy_since; /* CLOCK_MONOTONIC ns when the current write() began, 0 when idle (watchdog) */
    int error_reported;  /* on_error was called (once) */
    void *on_error;      /* a Python callable (not in the injection build) */
} Writer;

void w_init(Writer *w, const char *prefix, const char *suffix, const char *sid, const char *stream,
            unsigned long long max_bytes, double max_age, double interval, unsigned long long max_pending);
int w_start(Writer *w);
void w_finish(Writer *w, const char *end, size_t end_n);
void w_free(Writer *w);
void w_write_pending_locked(Writer *w);
void w_write_drop_record_locked(Writer *w);
void w_rotate_locked(Writer *w);
void w_ensure_dict_locked(Writer *w, int kind, uint64_t id);
int w_set_dict_locked(Writer *w, int kind, uint64_t id, const char *line, size_t n, size_t seq_at);
void w_count_drop_locked(Writer *w, int type);
int w_append_python_line_locked(Writer *w, const char *s, size_t n);

/* Before each record: rotate on size (age is checked by the flush thread). */
static inline void w_before_record_locked(Writer *w) {
    if (w->seg_size >= w->max_bytes && w->seg_size > 0) w_rotate_locked(w);
}

static inline void w_account_locked(Writer *w, size_t before) { w->seg_size += w->pending.n - before; }

/* Start a record line: {"type":"<tag>","session_id":"S","stream":"X","seq":N */
static inline void w_begin_line_locked(Writer *w, const char *tag, size_t tagn) {
    sb_put(&w->pending, w->head, strlen(w->head));
    sb_put(&w->pending, tag, tagn);
    sb_put(&w->pending, w->envelope, w->envelope_n);
    sb_u64(&w->pending, w->seq++);
}

/* Start a dictionary record's line in `b`; returns where its seq goes (w_set_dict_locked's seq_at). */
static inline size_t w_begin_dict_line(const Writer *w, sbuf *b) {
    sb_put(b, w->head, strlen(w->head));
    SB_LIT(b, "dict");
    sb_put(b, w->envelope, w->envelope_n);
    return b->n;
}

/* ------------------------------------------------------------------------------------------------ CUPTI (cupti.c) */

#define CUPTI_FN(ret, name, args) extern ret(CUPTIAPI *p_##name) args;
#include "cupti_fns.h"
#undef CUPTI_FN
extern char *(*p_demangle)(const char *, char *, size_t *, int *);

const char *cupti_err(CUptiResult r);
const char *load_cupti(const char *path);
extern void *g_cupti_lib; /* the dlopen handle of libcupti (deep.c resolves the deep engines' calls from it) */
/* deep.c: CUPTI's resource callbacks (module loads: the cubins PCs map to source lines with) */
void deep_on_resource(CUpti_CallbackId cbid, const void *cbdata);

/* ------------------------------------------------------------------------------------------------ options */

/* How the record path runs: one struct, filled once per start from config.Options (the Python engine,
 * through _native.start) or from gpufl run's environment (inject.c). The switches after `stacks` are
 * diagnostics for attributing cost (bench/, docs/configuration.md): with their defaults the hot paths test
 * at most one flag each (empty_callback per launch callback, buffer_diagnostics per activity buffer). */
typedef struct {
    size_t buffer_bytes;      /* CUPTI activity buffer size (Options.cupti_buffer_bytes) */
    unsigned flush_period_ms; /* cuptiActivityFlushPeriod; 0: buffers are delivered when full */
    int subscribe;            /* a CUPTI subscriber at all (no callbacks of any domain without it) */
    int callbacks;            /* launch callbacks */
    int runtime_domain, driver_domain; /* their domains (driver only by default: see start_tracing) */
    int activity;             /* activity records */
    int nvtx;                 /* NVTX callbacks (NVTX ranges as scopes) */
    char nvtx_domains[256];   /* which domains' ranges become scopes (nvtx_domains.c); "": the default */
    int nvtx_lazy_domains;    /* every NVTX domain's creation will be seen (this session set NVTX_INJECTION64_PATH
                               * first): the domain-API range callbacks may go off (nvtx_domains.c) */
    int serial_kernels;       /* CUPTI_ACTIVITY_KIND_KERNEL instead of CONCURRENT_KERNEL (serialises kernels) */
    int copies;               /* memcpy and memset activity */
    int syncs;                /* synchronisation activity (contract v3 sync records): off unless asked for, as
                               * enabling it costs every launch on the H100 (docs/benchmarks.md) */
    int discard;              /* free CUPTI's buffers unread */
    int host_pinned;          /* CUPTI's device-side timestamp buffers in pinned host memory */
    unsigned device_buffer_mb;/* their size; 0: CUPTI's default */
    char dump_dir[1024];      /* "": off; else raw activity buffers are written here (test fixtures) */
    int buffer_diagnostics;   /* discard || dump_dir[0]: the one flag buffer_completed tests */
    int empty_callback;          /* set by configure(): the launch callback returns at once (CUPTI's own cost) */
} NativeOptions;

extern NativeOptions g_opts;
void options_defaults(NativeOptions *o);

/* ------------------------------------------------------------------------------------------------ tracing state */

/* Occupancy inputs of one device (cudaGetDeviceProperties), as the Python side's DeviceLimits. */
typedef struct {
    int valid, warp_size, max_threads_per_sm, max_blocks_per_sm, max_threads_per_block, regs_per_sm,
        regs_per_block, shared_mem_per_sm, shared_mem_per_block_optin, reserved_shared_mem_per_block;
} DevLimits;
#define MAX_DEVICES 64

/* A launch site waiting for its activity record: written by the launching thread, read by the buffer
 * thread. Slot = corr & mask; `corr` is written last (release) and re-checked after reading (seqlock). */
typedef struct {
    _Atomic uint32_t corr;
    uint32_t thread;
    uint32_t stack; /* 0: none, else id + 1 */
    uint32_t pad;
    uint64_t enter;
    uint64_t dur;
    uint64_t scope;
} Site;
#define SITE_BITS 18
#define SITE_MASK ((1u << SITE_BITS) - 1)

/* A launch configuration (kernel, device, grid, block, registers, memory): interned once, as a dict record. */
typedef struct {
    uint64_t hash;
    char *name;
    uint32_t device, context;
    int32_t grid[3], block[3];
    uint16_t regs;
    int32_t ssmem, dsmem;
    uint32_t local;
    uint32_t id;
} LaunchConfig;

/* The one tracing session of this process (CUPTI allows one subscriber): what CUPTI's callbacks need. */
typedef struct {
    int loaded, active, subscribed;
    uint32_t version;
    CUpti_SubscriberHandle sub;
    Writer *w; /* read on CUPTI's buffer thread under g_writer_mu (buffers.c) */
    int64_t offset_ns; /* realtime = CUPTI timestamp + offset_ns (measured by the caller at attach) */
    int stacks;
    DevLimits lim[MAX_DEVICES];
    Site *sites;
    /* launch configurations (buffer thread, under the writer's lock) */
    LaunchConfig *configs;
    size_t nconfig_slots, nconfigs;
    CUpti_ActivityKind kernel_kind; /* what start_tracing enabled (g_opts.serial_kernels) */
    int sass_range; /* a SASS-metrics range is open: the serial kernel kind stands in for the concurrent one */
    _Atomic uint64_t buffers, kernels, memcpys, memsets, matched, unmatched, launches_cb, cupti_dropped,
        dump_seq, foreign_buffers, untimed;
    /* capture windows (gpufl.client.capture): 1 while outside a window, so start_tracing enables nothing and
     * capture_switch turns the callbacks and activity kinds on at the window's start (0, the default: traced) */
    int capture_off;
    uint64_t capture_switches, capture_applied; /* switches asked for; those that reached CUPTI (active) */
    int nvtx_ranges_on; /* the named domains' range callbacks are enabled (nvtx_domains.c: lazy domains) */
} TraceState;

extern TraceState g_trace;

/* cupti.c: subscribe and enable from g_opts; NULL on success, else why not. */
const char *start_tracing(int *enabled_out);
void stop_tracing(CUptiResult *flush, CUptiResult *fin, int finalize);
void enable_launch_callbacks(int on, int runtime, int driver);
void enable_activity(int on);
CUpti_ActivityKind active_kernel_kind(void);
void capture_switch(int on);

/* ------------------------------------------------------------------------------------------------ scopes and NVTX (scopes.c) */

#define MAX_SCOPE_DEPTH 256
extern GPUFL_TLS uint64_t tls_scopes[MAX_SCOPE_DEPTH];
extern GPUFL_TLS int tls_scope_depth;
extern _Atomic uint64_t g_last_open; /* the most recently entered scope still open anywhere */
extern _Atomic(CUcontext) g_launch_ctx; /* the context of the last launch traced: which GPU the program uses */

/* The innermost scope of this thread, else the one entered last anywhere (launch callback: per launch). */
static inline uint64_t current_scope(void) {
    if (tls_scope_depth > 0) return tls_scopes[tls_scope_depth - 1];
    return atomic_load_explicit(&g_last_open, memory_order_relaxed);
}

void scope_push(uint64_t inst);
void scope_pop(uint64_t inst);
void on_nvtx(CUpti_CallbackId cbid, const CUpti_NvtxData *d);

#define NVTX_START_BASE (3ULL << 40)
typedef struct {
    uint8_t kind; /* 0 begin, 1 end, 2 thread name */
    uint32_t tid;
    uint64_t inst, parent;
    int64_t ts;
    char name[192];
} NvtxEvent;
/* Take the queued NVTX events (the caller frees *out); returns how many, *dropped = those not queued. */
size_t nvtx_take(NvtxEvent **out, uint64_t *dropped);

/* Which NVTX domains become scopes (nvtx_domains.c): configured from GPUFL_NVTX_DOMAINS at start; ranges of
 * the others are counted per domain (nvtx_domain_counts). */
typedef struct {
    char name[64];
    uint64_t skipped;
    int partial; /* its ranges were not counted while the named domains' range callbacks were off */
} NvtxDomainCount;
void nvtx_domains_configure(const char *spec, int lazy);
int nvtx_domain_ranges_wanted(void);
void nvtx_domain_null_used(void);
void nvtx_domain_ranges_switched(int on);
void nvtx_apply_lazy_domains(void);
void nvtx_domain_created(const void *handle, const char *name);
int nvtx_domain_recorded(const void *handle);
void nvtx_domain_skipped(const void *handle);
size_t nvtx_domain_counts(NvtxDomainCount *out, size_t max);

/* ------------------------------------------------------------------------------------------------ launch sites and stacks (sites.c) */

void CUPTIAPI on_api(void *ud, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *cbdata);
int alloc_sites(void);
uint32_t capture_stack(void);
void sync_stacks_locked(Writer *w);
size_t stacks_count(void);
void stacks_reset(void);

/* ------------------------------------------------------------------------------------------------ records (records.c) */

void handle_record_locked(Writer *w, const CUpti_Activity *rec);
void configs_reset(void);

/* ------------------------------------------------------------------------------------------------ buffers (buffers.c) */

extern pthread_mutex_t g_writer_mu;
void process_buffer(uint8_t *buf, size_t valid);
void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records);
void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid);
size_t owned_count(void);

/* ------------------------------------------------------------------------------------------------ capture modes in C (capture_modes.c, control_file.c) */

/* The injection build's capture controller (gpufl.client.capture's rules, without Python); the extension
 * compiles it too, for its test hooks (capture_hooks.c). */
enum { CM_CONTINUOUS, CM_WINDOWS, CM_ON_DEMAND, CM_STEPS };
#define CAP_WINDOWS_PRESET "windows:2s/60s" /* gpufl.client.capture.WINDOWS_PRESET */
#define CAP_CONTROL_FILE "gpufl-control.json"
#define CAP_STR 257 /* the control file's strings: at most 256 bytes */
typedef struct {
    int mode;
    int64_t on_ns, period_ns;
    int64_t first_step, last_step;
    char text[64];
} CapPlan;
typedef enum { CAP_NONE = -1, CAP_OPENED, CAP_EXTENDED, CAP_REFUSED, CAP_CONTINUOUS } CapOutcome;
extern const char *const CAP_MODES[];
extern const char *const CAP_OUTCOMES[];

int cap_parse(const char *text, CapPlan *p, char *err, size_t errn);
int cap_begin(const CapPlan *plan, Writer *w, const char *sid, const char *log_dir, double default_s,
              int64_t (*clock)(void));
int cap_start(int with_thread);
CapOutcome cap_request(const char *kind, double seconds, const char *requester, const char *rid);
int cap_stop(void);
int64_t cap_tick(void);
CapOutcome cap_poll_control(void);
void cap_shutdown(void);
void cap_notice(Writer *w, const char *code, const char *message);
void cap_switch_tracing(int on);
void cap_state(int *open, uint64_t *windows, uint64_t *notices, int64_t *deadline);

/* One control-file request, as control_parse read it. */
enum { CAP_E_TRACING = 1, CAP_E_SASS = 2, CAP_E_PC_SAMPLING = 4 }; /* `engines`, as bits */
typedef struct {
    char id[CAP_STR], requester[CAP_STR], session_id[CAP_STR];
    double seconds, steps;
    int has_id, has_requester, has_session, session_is_string, has_seconds, has_steps;
    int has_session_ids, names_me; /* `session_ids` (remote capture, #22), and whether it names `me` */
    unsigned engines;              /* CAP_E_* asked for; 0: none named (tracing, the default) */
} ControlRequest;
/* `me`: this session's id, looked for in `session_ids` (NULL: none). */
int control_parse(const char *s, size_t n, ControlRequest *r, const char *me, char *err, size_t errn);

/* ------------------------------------------------------------------------------------------------ injection (inject.c) */

#ifdef GPUFL_INJECTION
void query_device_limits(void);
#endif

/* ------------------------------------------------------------------------------------------------ Python binding */

#ifndef GPUFL_INJECTION
extern PyTypeObject WriterType; /* py_writer.c */
/* test_hooks.c: CUPTI's side of the record path driven from tests without a GPU */
PyObject *py_replay_buffer(PyObject *self, PyObject *args);
PyObject *py_record_launch(PyObject *self, PyObject *args);
PyObject *py_nvtx_call(PyObject *self, PyObject *args);
PyObject *py_nvtx_domains(PyObject *self, PyObject *args);
PyObject *py_nvtx_ranges_wanted(PyObject *self, PyObject *unused);
PyObject *py_nvtx_ranges_off(PyObject *self, PyObject *unused);
PyObject *py_request_buffer(PyObject *self, PyObject *unused);
PyObject *py_complete_buffer(PyObject *self, PyObject *args);
extern PyMethodDef DEEP_METHODS[]; /* py_deep.c: the deep engines' functions */
extern PyMethodDef CAPTURE_HOOKS[]; /* capture_hooks.c: the C capture controller, driven from tests */
#endif

#pragma GCC visibility pop

#endif /* GPUFL_NATIVE_H */

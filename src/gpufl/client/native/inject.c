/* inject.c — `gpufl run -- ./app` for programs that are not Python: CUDA loads this library at cuInit
 * because CUDA_INJECTION64_PATH names it, and calls InitializeInjection. `gpufl run` (the parent, in Python)
 * owns the session: it writes the scope and system streams (NVML) and passes, in the environment, the
 * session id, the device stream's segment path, its session_start line and the options; this library
 * writes the device stream. Only in the injection build (-DGPUFL_INJECTION). */
#include "gpufl_native.h"

#ifdef GPUFL_INJECTION
static Writer g_iw;

void query_device_limits(void) {
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!cuda) return;
    CUresult (*get_count)(int *) = (CUresult(*)(int *))dlsym(cuda, "cuDeviceGetCount");
    CUresult (*get_dev)(CUdevice *, int) = (CUresult(*)(CUdevice *, int))dlsym(cuda, "cuDeviceGet");
    CUresult (*get_attr)(int *, CUdevice_attribute, CUdevice) =
        (CUresult(*)(int *, CUdevice_attribute, CUdevice))dlsym(cuda, "cuDeviceGetAttribute");
    int n = 0;
    if (!get_count || !get_dev || !get_attr || get_count(&n) != CUDA_SUCCESS) return;
    for (int i = 0; i < n && i < MAX_DEVICES; i++) {
        CUdevice d;
        if (get_dev(&d, i) != CUDA_SUCCESS) continue;
        DevLimits l = {0};
        int ok = 1;
#define ATTR(field, a) ok &= get_attr(&l.field, a, d) == CUDA_SUCCESS
        ATTR(warp_size, CU_DEVICE_ATTRIBUTE_WARP_SIZE);
        ATTR(max_threads_per_sm, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR);
        ATTR(max_blocks_per_sm, CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR);
        ATTR(max_threads_per_block, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
        ATTR(regs_per_sm, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR);
        ATTR(regs_per_block, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK);
        ATTR(shared_mem_per_sm, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR);
        ATTR(shared_mem_per_block_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        ATTR(reserved_shared_mem_per_block, CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK);
#undef ATTR
        l.valid = ok;
        g_trace.lim[i] = l;
    }
}

/* realtime = cupti + offset: the narrowest of 25 brackets (least scheduling noise). */
static void measure_clock(int64_t *offset, int64_t *width) {
    *width = INT64_MAX;
    for (int i = 0; i < 25; i++) {
        int64_t t0 = realtime_ns();
        uint64_t c = 0;
        p_cuptiGetTimestamp(&c);
        int64_t t1 = realtime_ns();
        if (t1 - t0 < *width) {
            *width = t1 - t0;
            *offset = (t0 + t1) / 2 - (int64_t)c;
        }
    }
}

static void injection_exit(void) {
    if (!g_trace.w) return;
    cap_shutdown(); /* the open window's record, before tracing stops and the stream ends */
    CUptiResult a = CUPTI_SUCCESS, b = CUPTI_SUCCESS;
    if (g_trace.active) stop_tracing(&a, &b, 1);
    pthread_mutex_lock(&g_iw.mu);
    uint64_t records = g_iw.seq + 1 + (g_iw.drop_pending ? 1 : 0), dropped = g_iw.dropped_total;
    pthread_mutex_unlock(&g_iw.mu);
    sbuf end = {0};
    SB_LIT(&end, "{\"type\":\"session_end\",\"session_id\":");
    const char *sid = getenv("GPUFL_SESSION_ID");
    sb_json_str(&end, sid, strlen(sid));
    SB_LIT(&end, ",\"stream\":\"device\"");
    KEY_I64(&end, ",\"end_ns\":", realtime_ns());
    KEY_U64(&end, ",\"reason\":\"atexit\",\"records\":", records);
    KEY_U64(&end, ",\"dropped\":", dropped);
    SB_LIT(&end, "}");
    w_finish(&g_iw, end.p, end.n);
    free(end.p);
    g_trace.w = NULL;
}

/* The diagnostics of NativeOptions from the environment, read once here; the same variables and meanings
 * as gpufl.client.config.NativeDiagnostics (which `gpufl run` passes on by inheritance). */
static void options_from_env(NativeOptions *o) {
    const char *v;
#define FLAG_OFF(var) ((v = getenv(var)) && v[0] == '0')
#define FLAG_ON(var) ((v = getenv(var)) && v[0] == '1')
    o->subscribe = !FLAG_OFF("GPUFL_NATIVE_SUBSCRIBE");
    o->callbacks = !FLAG_OFF("GPUFL_NATIVE_CALLBACKS");
    o->activity = !FLAG_OFF("GPUFL_NATIVE_ACTIVITY");
    o->nvtx = !FLAG_OFF("GPUFL_NATIVE_NVTX");
    o->copies = !FLAG_OFF("GPUFL_NATIVE_COPIES");
    o->discard = FLAG_ON("GPUFL_NATIVE_DISCARD");
    o->host_pinned = FLAG_ON("GPUFL_NATIVE_HOST_PINNED");
    o->syncs = FLAG_ON("GPUFL_SYNCS"); /* Options.syncs: the one non-diagnostic here */
#undef FLAG_OFF
#undef FLAG_ON
    v = getenv("GPUFL_NVTX_DOMAINS"); /* Options.nvtx_domains, as gpufl.init reads it */
    snprintf(o->nvtx_domains, sizeof o->nvtx_domains, "%s", v ? v : "");
    const char *dom = getenv("GPUFL_NATIVE_DOMAINS");
    o->runtime_domain = dom && strstr(dom, "runtime");
    o->driver_domain = !dom || strstr(dom, "driver");
    v = getenv("GPUFL_NATIVE_KERNEL_KIND");
    o->serial_kernels = v && !strcmp(v, "serial");
    v = getenv("GPUFL_NATIVE_DEVICE_BUFFER_MB");
    o->device_buffer_mb = v && atoi(v) > 0 ? (unsigned)atoi(v) : 0;
    o->buffer_diagnostics = o->discard; /* no dump_dir: fixtures are recorded through the Python engine */
}

/* GPUFL_CAPTURE (gpufl run --capture / --always-on): 1 when tracing waits for windows (capture_modes.c). A
 * mode that cannot be read (gpufl run checks it, so only a hand-set variable) is traced continuously, and a
 * notice says so. */
static int capture_from_env(CapPlan *plan) {
    const char *mode = getenv("GPUFL_CAPTURE");
    char err[256], msg[400];
    if (cap_parse(mode ? mode : "", plan, err, sizeof err)) {
        snprintf(msg, sizeof msg, "%s: traced continuously", err);
        cap_notice(&g_iw, "capture_mode_unknown", msg);
        return 0;
    }
    if (plan->mode == CM_CONTINUOUS) return 0;
    g_trace.capture_off = 1; /* start_tracing enables nothing; the first window (if any) switches it on */
    return 1;
}

/* The capture controller's thread, once tracing runs (without tracing there is nothing to window). */
static void capture_start(const CapPlan *plan, const char *sid) {
    const char *secs = getenv("GPUFL_CAPTURE_SECONDS");
    double dflt = secs && atof(secs) > 0 ? atof(secs) : 10.0;
    if (cap_begin(plan, &g_iw, sid, getenv("GPUFL_LOG_DIR"), dflt, NULL) == 0 && cap_start(1))
        cap_notice(&g_iw, "capture_thread", "the capture controller could not start: no windows will open");
}

__attribute__((visibility("default"))) int InitializeInjection(void) {
    static int done;
    if (done) return 1;
    done = 1;
    const char *prefix = getenv("GPUFL_INJECT_PREFIX"), *suffix = getenv("GPUFL_INJECT_SUFFIX");
    const char *sid = getenv("GPUFL_SESSION_ID"), *start = getenv("GPUFL_INJECT_SESSION_START");
    const char *lib = getenv("GPUFL_LIBCUPTI"), *opts = getenv("GPUFL_INJECT_OPTS");
    /* Programs this one starts are not injected again: their device stream would collide with ours. */
    unsetenv("CUDA_INJECTION64_PATH");
    if (!prefix || !suffix || !sid || !start) {
        fprintf(stderr, "gpufl: loaded by CUDA without `gpufl run`'s environment; not profiling\n");
        return 1;
    }
    unsigned long long max_bytes = 64ull << 20, bufbytes = 8ull << 20;
    double max_age = 600, interval = 0.05;
    if (opts) sscanf(opts, "%llu:%lf:%lf:%llu", &max_bytes, &max_age, &interval, &bufbytes);
    const char *err = load_cupti(lib && *lib ? lib : "libcupti.so");
    if (err) {
        fprintf(stderr, "gpufl: not profiling: %s\n", err);
        return 1;
    }
    w_init(&g_iw, prefix, suffix, sid, "device", max_bytes, max_age, interval, 0);
    if (w_start(&g_iw)) {
        fprintf(stderr, "gpufl: not profiling: %s\n", g_iw.errmsg);
        return 1;
    }
    /* session_start as gpufl run composed it, with this process's pid and the measured clock offset */
    int64_t offset = 0, width = 0;
    measure_clock(&offset, &width);
    sbuf line = {0};
    const char *pid_at = strstr(start, "\"pid\":0,");
    size_t n = strlen(start);
    while (n && (start[n - 1] == '\n' || start[n - 1] == ' ')) n--;
    if (n && start[n - 1] == '}') n--; /* reopen the object: pid, version and clock go in */
    if (pid_at && (size_t)(pid_at - start) < n) {
        sb_put(&line, start, (size_t)(pid_at - start));
        KEY_U64(&line, "\"pid\":", (uint64_t)getpid());
        SB_LIT(&line, ",");
        const char *rest = pid_at + strlen("\"pid\":0,");
        sb_put(&line, rest, n - (size_t)(rest - start));
    } else {
        sb_put(&line, start, n);
    }
    KEY_I64(&line, ",\"cupti_version\":", g_trace.version);
    KEY_I64(&line, ",\"clock\":{\"offset_ns\":", offset);
    KEY_I64(&line, ",\"measured_at_ns\":", realtime_ns());
    KEY_I64(&line, ",\"uncertainty_ns\":", width / 2 + 1);
    SB_LIT(&line, "}}");
    pthread_mutex_lock(&g_iw.mu);
    int bad = w_append_python_line_locked(&g_iw, line.p, line.n);
    pthread_mutex_unlock(&g_iw.mu);
    free(line.p);
    if (bad) fprintf(stderr, "gpufl: GPUFL_INJECT_SESSION_START has no stream field\n");
    if (alloc_sites()) return 1;
    g_trace.w = &g_iw;
    g_trace.offset_ns = offset;
    g_trace.stacks = 0;
    int enabled = 0;
    options_defaults(&g_opts);
    options_from_env(&g_opts);
    g_opts.buffer_bytes = (size_t)bufbytes;
    g_opts.flush_period_ms = 500;
    CapPlan plan;
    int windowed = capture_from_env(&plan);
    err = start_tracing(&enabled);
    if (err) fprintf(stderr, "gpufl: kernel tracing unavailable: %s\n", err);
    else if (windowed) capture_start(&plan, sid);
    atexit(injection_exit);
    return 1;
}
#endif

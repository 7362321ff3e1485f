/* records.c — activity records to JSON lines: kernels (joined with their launch site and their interned
 * launch configuration, whose dict record carries the theoretical occupancy), memcpys, memsets and
 * synchronisation calls. Runs on CUPTI's buffer thread with the writer locked. */
#include "gpufl_native.h"

static const char *COPY_KINDS[] = {"unknown", "HtoD", "DtoH", "HtoA", "AtoH", "AtoA",
                                   "AtoD",    "DtoA", "DtoD", "HtoH", "PtoP"};
static const char *MEM_KINDS[] = {"unknown", "Pageable", "Pinned",       "Device",
                                  "Array",   "Managed",  "DeviceStatic", "ManagedStatic"};
static const char *SYNC_KINDS[] = {"unknown", "event", "stream_wait_event", "stream", "context"};
#define ENUM_NAME(tab, v) ((unsigned)(v) < sizeof(tab) / sizeof(*(tab)) ? (tab)[(v)] : "unknown")

typedef struct {
    int ok;
    uint32_t thread, stack;
    uint64_t enter, dur, scope;
} SiteCopy;

static SiteCopy site_of(uint32_t corr) {
    SiteCopy c = {0};
    Site *s = &g_trace.sites[corr & SITE_MASK];
    if (atomic_load_explicit(&s->corr, memory_order_acquire) != corr) return c;
    c.thread = s->thread;
    c.stack = s->stack;
    c.enter = s->enter;
    c.dur = s->dur;
    c.scope = s->scope;
    atomic_thread_fence(memory_order_acquire);
    c.ok = atomic_load_explicit(&s->corr, memory_order_relaxed) == corr;
    return c;
}

static void put_site_fields(sbuf *b, const SiteCopy *s, uint64_t start, int api) {
    if (!s->ok) return;
    if (api && s->enter) {
        KEY_I64(b, ",\"api_lead_ns\":", (int64_t)start + g_trace.offset_ns - (int64_t)s->enter);
        if (s->dur) KEY_U64(b, ",\"api_dur_ns\":", s->dur);
    }
    if (s->thread) KEY_U64(b, ",\"thread_id\":", s->thread);
    if (s->stack) KEY_U64(b, ",\"stack_id\":", s->stack - 1);
    if (s->scope) KEY_U64(b, ",\"scope_inst\":", s->scope);
}

/* Theoretical occupancy, as gpufl/client/engines/occupancy.py (the CUDA occupancy calculator). */
typedef struct {
    double occ, reg, smem, warp, block;
    int max_blocks;
    const char *limiter;
} Occ;

static int ceil_to(int x, int unit) { return ((x + unit - 1) / unit) * unit; }

static Occ occupancy(const DevLimits *dev, int threads, int regs, int smem) {
    const int big = 1 << 30;
    int ws = dev->warp_size > 0 ? dev->warp_size : 32;
    int max_warps = dev->max_threads_per_sm / ws;
    int wpb = (threads + ws - 1) / ws;
    if (wpb < 1) wpb = 1;
    int by_warps = threads <= dev->max_threads_per_block ? max_warps / wpb : 0;
    int by_blocks = dev->max_blocks_per_sm;
    int by_regs;
    if (regs <= 0)
        by_regs = big;
    else if (regs > 255)
        by_regs = 0;
    else {
        int rpw = ceil_to(regs * ws, 256);
        if (rpw * wpb > dev->regs_per_block)
            by_regs = 0;
        else
            by_regs = (((dev->regs_per_sm / 4) / rpw) * 4) / wpb;
    }
    int by_smem;
    if (smem > dev->shared_mem_per_block_optin)
        by_smem = 0;
    else {
        int need = ceil_to(smem + dev->reserved_shared_mem_per_block, 128);
        by_smem = need > 0 ? dev->shared_mem_per_sm / need : big;
    }
    int vals[4] = {by_regs, by_smem, by_warps, by_blocks};
    const char *names[4] = {"registers", "shared_memory", "warps", "blocks"};
    int blocks = vals[0];
    for (int i = 1; i < 4; i++)
        if (vals[i] < blocks) blocks = vals[i];
    const char *lim = "blocks";
    for (int i = 0; i < 4; i++)
        if (vals[i] == blocks) {
            lim = names[i];
            break;
        }
#define OCC(bv) ((bv) < big ? (double)(bv) * wpb / max_warps : 1.0)
#define CAP1(x) ((x) > 1.0 ? 1.0 : (x))
    Occ o = {OCC(blocks), CAP1(OCC(by_regs)), CAP1(OCC(by_smem)), CAP1(OCC(by_warps)), CAP1(OCC(by_blocks)),
             blocks, lim};
    return o;
}

static uint32_t config_id_locked(Writer *w, const CUpti_ActivityKernel10 *k) {
    const char *name = k->name ? k->name : "";
    uint64_t h = hash_str(1469598103934665603ULL, name);
    h = hash64(h, k->deviceId);
    h = hash64(h, k->contextId);
    h = hash64(h, ((uint64_t)(uint32_t)k->gridX << 32) ^ (uint32_t)k->gridY);
    h = hash64(h, ((uint64_t)(uint32_t)k->gridZ << 32) ^ (uint32_t)k->blockX);
    h = hash64(h, ((uint64_t)(uint32_t)k->blockY << 32) ^ (uint32_t)k->blockZ);
    h = hash64(h, ((uint64_t)k->registersPerThread << 48) ^ ((uint64_t)(uint32_t)k->staticSharedMemory << 16));
    h = hash64(h, ((uint64_t)(uint32_t)k->dynamicSharedMemory << 32) ^ k->localMemoryPerThread);
    if (g_trace.nconfigs * 2 >= g_trace.nconfig_slots) {
        size_t slots = g_trace.nconfig_slots ? g_trace.nconfig_slots * 2 : 1024;
        LaunchConfig *t = calloc(slots, sizeof *t);
        if (!t) return UINT32_MAX;
        for (size_t i = 0; i < g_trace.nconfig_slots; i++) {
            if (!g_trace.configs[i].name) continue;
            size_t j = g_trace.configs[i].hash & (slots - 1);
            while (t[j].name) j = (j + 1) & (slots - 1);
            t[j] = g_trace.configs[i];
        }
        free(g_trace.configs);
        g_trace.configs = t;
        g_trace.nconfig_slots = slots;
    }
    size_t j = h & (g_trace.nconfig_slots - 1);
    while (g_trace.configs[j].name) {
        LaunchConfig *e = &g_trace.configs[j];
        if (e->hash == h && e->device == k->deviceId && e->context == k->contextId && e->grid[0] == k->gridX &&
            e->grid[1] == k->gridY && e->grid[2] == k->gridZ && e->block[0] == k->blockX &&
            e->block[1] == k->blockY && e->block[2] == k->blockZ && e->regs == k->registersPerThread &&
            e->ssmem == k->staticSharedMemory && e->dsmem == k->dynamicSharedMemory &&
            e->local == k->localMemoryPerThread && !strcmp(e->name, name))
            return e->id;
        j = (j + 1) & (g_trace.nconfig_slots - 1);
    }
    LaunchConfig *e = &g_trace.configs[j];
    e->hash = h;
    e->name = strdup(name);
    e->device = k->deviceId;
    e->context = k->contextId;
    e->grid[0] = k->gridX, e->grid[1] = k->gridY, e->grid[2] = k->gridZ;
    e->block[0] = k->blockX, e->block[1] = k->blockY, e->block[2] = k->blockZ;
    e->regs = k->registersPerThread;
    e->ssmem = k->staticSharedMemory;
    e->dsmem = k->dynamicSharedMemory;
    e->local = k->localMemoryPerThread;
    e->id = (uint32_t)g_trace.nconfigs++;

    /* its dictionary record */
    sbuf b = {0};
    size_t seq_at = w_begin_dict_line(w, &b);
    KEY_U64(&b, ",\"kind\":\"launch\",\"id\":", e->id);
    SB_LIT(&b, ",\"launch\":{\"name\":");
    char *dem = NULL;
    if (p_demangle && name[0] == '_' && name[1] == 'Z') {
        int status = 0;
        dem = p_demangle(name, NULL, NULL, &status);
        if (status != 0) {
            free(dem);
            dem = NULL;
        }
    }
    const char *shown = dem ? dem : name;
    sb_json_str(&b, shown, strlen(shown));
    free(dem);
    SB_LIT(&b, ",\"mangled\":");
    sb_json_str(&b, name, strlen(name));
    KEY_U64(&b, ",\"device_id\":", k->deviceId);
    KEY_U64(&b, ",\"context_id\":", k->contextId);
    KEY_I64(&b, ",\"grid\":[", k->gridX);
    KEY_I64(&b, ",", k->gridY);
    KEY_I64(&b, ",", k->gridZ);
    KEY_I64(&b, "],\"block\":[", k->blockX);
    KEY_I64(&b, ",", k->blockY);
    KEY_I64(&b, ",", k->blockZ);
    KEY_U64(&b, "],\"num_regs\":", k->registersPerThread);
    KEY_I64(&b, ",\"static_shared_bytes\":", k->staticSharedMemory);
    KEY_I64(&b, ",\"dyn_shared_bytes\":", k->dynamicSharedMemory);
    KEY_U64(&b, ",\"local_bytes\":", k->localMemoryPerThread);
    if (k->deviceId < MAX_DEVICES && g_trace.lim[k->deviceId].valid) {
        Occ o = occupancy(&g_trace.lim[k->deviceId], k->blockX * k->blockY * k->blockZ, k->registersPerThread,
                          k->staticSharedMemory + k->dynamicSharedMemory);
        SB_LIT(&b, ",\"occupancy\":");
        sb_f(&b, o.occ, 4);
        SB_LIT(&b, ",\"reg_occupancy\":");
        sb_f(&b, o.reg, 4);
        SB_LIT(&b, ",\"smem_occupancy\":");
        sb_f(&b, o.smem, 4);
        SB_LIT(&b, ",\"warp_occupancy\":");
        sb_f(&b, o.warp, 4);
        SB_LIT(&b, ",\"block_occupancy\":");
        sb_f(&b, o.block, 4);
        SB_LIT(&b, ",\"limiting_resource\":\"");
        sb_put(&b, o.limiter, strlen(o.limiter));
        KEY_I64(&b, "\",\"max_active_blocks\":", o.max_blocks);
    }
    KEY_U64(&b, ",\"cache_config_requested\":", k->cacheConfig.config.requested);
    KEY_U64(&b, ",\"cache_config_executed\":", k->cacheConfig.config.executed);
    KEY_U64(&b, ",\"shared_mem_config_bytes\":", k->sharedMemoryExecuted);
    SB_LIT(&b, "}}");
    w_set_dict_locked(w, DK_LAUNCH, e->id, b.p, b.n, seq_at);
    free(b.p);
    return e->id;
}

/* The fields every activity line starts with, after its type: where and when it ran. */
static inline void put_span(sbuf *b, uint32_t device, uint32_t stream, uint32_t corr, uint64_t start,
                            uint64_t end, int64_t off) {
    KEY_U64(b, ",\"device_id\":", device);
    KEY_U64(b, ",\"stream_id\":", stream);
    KEY_U64(b, ",\"corr_id\":", corr);
    KEY_I64(b, ",\"start_ns\":", (int64_t)start + off);
    KEY_I64(b, ",\"end_ns\":", (int64_t)end + off);
}

/* One activity record → one line (writer locked). */
void handle_record_locked(Writer *w, const CUpti_Activity *rec) {
    int64_t off = g_trace.offset_ns;
    int drop_type;
    uint64_t t_start, t_end;
    switch (rec->kind) {
        case CUPTI_ACTIVITY_KIND_KERNEL:
        case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
            drop_type = DROP_KERNEL;
            t_start = ((const CUpti_ActivityKernel10 *)rec)->start;
            t_end = ((const CUpti_ActivityKernel10 *)rec)->end;
            break;
        case CUPTI_ACTIVITY_KIND_MEMCPY:
            drop_type = DROP_MEMCPY;
            t_start = ((const CUpti_ActivityMemcpy6 *)rec)->start;
            t_end = ((const CUpti_ActivityMemcpy6 *)rec)->end;
            break;
        case CUPTI_ACTIVITY_KIND_MEMSET:
            drop_type = DROP_MEMSET;
            t_start = ((const CUpti_ActivityMemset4 *)rec)->start;
            t_end = ((const CUpti_ActivityMemset4 *)rec)->end;
            break;
        case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION:
            drop_type = DROP_SYNC;
            t_start = ((const CUpti_ActivitySynchronization2 *)rec)->start;
            t_end = ((const CUpti_ActivitySynchronization2 *)rec)->end;
            break;
        default:
            return;
    }
    /* No timestamps (start 0 or end before start): after a CUDA error such as a device-side assert, CUPTI
     * delivers the records it had not read yet so. Written, they would be kernels at 1970 that the contract
     * refuses; skipped and counted, the engine says how many (notice cupti_untimed_records). */
    if (t_start == 0 || t_end < t_start) {
        atomic_fetch_add_explicit(&g_trace.untimed, 1, memory_order_relaxed);
        return;
    }
    if (w->pending.n > w->max_pending) { /* the disk cannot keep up: count, never block CUPTI */
        w_count_drop_locked(w, drop_type);
        return;
    }
    w_before_record_locked(w);
    sbuf *b = &w->pending;
    size_t before = b->n;
    if (drop_type == DROP_KERNEL) {
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        uint32_t lid = config_id_locked(w, k);
        SiteCopy s = site_of(k->correlationId);
        if (s.ok) atomic_fetch_add_explicit(&g_trace.matched, 1, memory_order_relaxed);
        else atomic_fetch_add_explicit(&g_trace.unmatched, 1, memory_order_relaxed);
        w_ensure_dict_locked(w, DK_LAUNCH, lid);
        if (s.ok && s.stack) w_ensure_dict_locked(w, DK_STACK, s.stack - 1);
        w_begin_line_locked(w, "kernel", 6);
        KEY_U64(b, ",\"launch_id\":", lid);
        put_span(b, k->deviceId, k->streamId, k->correlationId, k->start, k->end, off);
        put_site_fields(b, &s, k->start, 1);
        if (k->graphId) {
            KEY_U64(b, ",\"graph_id\":", k->graphId);
            if (k->graphNodeId) KEY_U64(b, ",\"graph_node_id\":", k->graphNodeId);
        }
        atomic_fetch_add_explicit(&g_trace.kernels, 1, memory_order_relaxed);
    } else if (drop_type == DROP_MEMCPY) {
        const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
        SiteCopy s = site_of(m->correlationId);
        if (s.ok && s.stack) w_ensure_dict_locked(w, DK_STACK, s.stack - 1);
        w_begin_line_locked(w, "memcpy", 6);
        put_span(b, m->deviceId, m->streamId, m->correlationId, m->start, m->end, off);
        KEY_U64(b, ",\"bytes\":", m->bytes);
        SB_LIT(b, ",\"copy_kind\":\"");
        const char *ck = ENUM_NAME(COPY_KINDS, m->copyKind);
        sb_put(b, ck, strlen(ck));
        SB_LIT(b, "\",\"src_kind\":\"");
        const char *sk = ENUM_NAME(MEM_KINDS, m->srcKind);
        sb_put(b, sk, strlen(sk));
        SB_LIT(b, "\",\"dst_kind\":\"");
        const char *dk = ENUM_NAME(MEM_KINDS, m->dstKind);
        sb_put(b, dk, strlen(dk));
        SB_LIT(b, "\"");
        if (m->end > m->start) {
            SB_LIT(b, ",\"throughput_gbps\":");
            sb_f(b, (double)m->bytes / (double)(m->end - m->start), 3);
        }
        KEY_U64(b, ",\"context_id\":", m->contextId);
        if (m->graphId) KEY_U64(b, ",\"graph_id\":", m->graphId);
        put_site_fields(b, &s, m->start, 1);
        if (m->flags & CUPTI_ACTIVITY_FLAG_MEMCPY_ASYNC) SB_LIT(b, ",\"mode\":\"async\"");
        else SB_LIT(b, ",\"mode\":\"sync\"");
        atomic_fetch_add_explicit(&g_trace.memcpys, 1, memory_order_relaxed);
    } else if (drop_type == DROP_SYNC) {
        const CUpti_ActivitySynchronization2 *y = (const CUpti_ActivitySynchronization2 *)rec;
        w_begin_line_locked(w, "sync", 4);
        SB_LIT(b, ",\"sync_kind\":\"");
        const char *yk = ENUM_NAME(SYNC_KINDS, y->type);
        sb_put(b, yk, strlen(yk));
        SB_LIT(b, "\"");
        KEY_I64(b, ",\"start_ns\":", (int64_t)y->start + off);
        KEY_I64(b, ",\"end_ns\":", (int64_t)y->end + off);
        KEY_U64(b, ",\"corr_id\":", y->correlationId);
        KEY_U64(b, ",\"context_id\":", y->contextId);
        /* CUPTI_SYNCHRONIZATION_INVALID_VALUE (all ones) where the call has no stream or event */
        if (y->streamId != UINT32_MAX) KEY_U64(b, ",\"stream_id\":", y->streamId);
        if (y->cudaEventId != UINT32_MAX) KEY_U64(b, ",\"event_id\":", y->cudaEventId);
    } else {
        const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
        SiteCopy s = site_of(m->correlationId);
        if (s.ok && s.stack) w_ensure_dict_locked(w, DK_STACK, s.stack - 1);
        w_begin_line_locked(w, "memset", 6);
        put_span(b, m->deviceId, m->streamId, m->correlationId, m->start, m->end, off);
        KEY_U64(b, ",\"bytes\":", m->bytes);
        KEY_U64(b, ",\"value\":", m->value);
        SB_LIT(b, ",\"mem_kind\":\"");
        const char *mk = ENUM_NAME(MEM_KINDS, m->memoryKind);
        sb_put(b, mk, strlen(mk));
        SB_LIT(b, "\"");
        KEY_U64(b, ",\"context_id\":", m->contextId);
        if (m->graphId) KEY_U64(b, ",\"graph_id\":", m->graphId);
        put_site_fields(b, &s, m->start, 0);
        atomic_fetch_add_explicit(&g_trace.memsets, 1, memory_order_relaxed);
    }
    SB_LIT(b, "}\n");
    w_account_locked(w, before);
}


/* Forget every launch configuration (between sessions, never while tracing). */
void configs_reset(void) {
    for (size_t i = 0; i < g_trace.nconfig_slots; i++) free(g_trace.configs[i].name);
    free(g_trace.configs);
    g_trace.configs = NULL;
    g_trace.nconfig_slots = g_trace.nconfigs = 0;
}

/* g_trace.w is read on CUPTI's buffer thread and replaced or cleared by Python (attach, detach): this lock keeps
 * the writer alive while a buffer is written to it, so a detach racing a late buffer cannot free it
 * mid-use. Order: g_writer_mu before the writer's own lock; never taken with the GIL held while waiting. */
pthread_mutex_t g_writer_mu = PTHREAD_MUTEX_INITIALIZER;

void process_buffer(uint8_t *buf, size_t valid) {
    if (!p_cuptiActivityGetNextRecord) return;
    pthread_mutex_lock(&g_writer_mu);
    Writer *w = g_trace.w;
    if (w) {
        pthread_mutex_lock(&w->mu);
        sync_stacks_locked(w);
        CUpti_Activity *rec = NULL;
        while (p_cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS) handle_record_locked(w, rec);
        pthread_mutex_unlock(&w->mu);
        atomic_fetch_add_explicit(&g_trace.buffers, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g_writer_mu);
}

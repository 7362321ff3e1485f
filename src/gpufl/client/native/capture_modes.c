/* capture_modes.c — capture modes in C, for the injection build (`gpufl run -- ./app`, no Python): what
 * gpufl.client.capture does for Python programs (docs/capture-modes.md), the same records and the same rules.
 *
 * GPUFL_CAPTURE = continuous | windows[:ON/PERIOD] | on-demand | steps:FIRST-LAST. Without Python there is
 * no gpufl.step(), so `steps:` runs as on-demand (a notice says so) and a request for steps is refused. The
 * triggers here: the schedule of `windows`, SIGUSR2 (when the program has no handler of its own) and the
 * control file `<log_dir>/gpufl-control.json` (control_file.c parses it). One window at a time: a request
 * during a window extends it when it asks for a later end, and is refused otherwise. Every window becomes one
 * `capture_window` record on the device stream when it closes; a control file that cannot be acted on
 * becomes a `notice` record (there is no log to write to inside someone else's program). Each control-file
 * request acted on is answered by a `capture_request` record (contract v7, remote capture: issue #22), with
 * the Python side's rules: GPUFL_REMOTE_CAPTURE=0 refuses them all, GPUFL_REMOTE_CAPTURE_BUDGET (seconds an
 * hour, default 120) bounds their windows, the deep engines (sass, pc_sampling) are missing here.
 *
 * One small thread runs the schedule, closes windows that ran out and polls the control file at most once a
 * second; the program's threads never wait on it (the launch path does not know it exists: a window switches
 * CUPTI's callbacks and activity kinds on or off, capture_switch). Time comes through a clock pointer, so the
 * extension's test hooks (capture_hooks.c) drive the same code on a clock of their own, without a GPU. */
#include "gpufl_native.h"

#include <math.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/stat.h>

#define POLL_NS 1000000000LL /* the control file: at most once a second */
#define SEEN_N 256          /* control-file request ids remembered (hashes): a rewrite with the same id is a no-op */
#define SPENT_N 256         /* control-file windows remembered for the budget (an hour's worth, at most) */
#define HOUR_NS 3600000000000LL

const char *const CAP_MODES[] = {"continuous", "windows", "on-demand", "steps"};
const char *const CAP_OUTCOMES[] = {"opened", "extended", "refused", "continuous"};

typedef struct {
    int open;
    int64_t start_ns, deadline_ns;
    const char *kind;    /* schedule, signal, control_file */
    double seconds;
    char requester[CAP_STR], request_id[CAP_STR];
    int has_requester;
    uint64_t extended, refused;
} CapWindow;

static struct {
    int on;              /* cap_begin ran and shutdown did not */
    CapPlan plan;
    Writer *w;
    char sid[65];
    char control_path[4096]; /* "": no log folder */
    int64_t default_ns, started_ns, next_scheduled; /* next_scheduled 0: none */
    int64_t (*clock)(void);
    pthread_mutex_t mu;
    CapWindow win;
    int64_t control_mtime;
    uint64_t seen[SEEN_N];
    size_t nseen;
    volatile sig_atomic_t signal_pending;
    int wake_r, wake_w;
    pthread_t thread;
    int thread_on, stop, usr2_installed, atfork_set;
    uint64_t windows, notices;
    int remote;          /* GPUFL_REMOTE_CAPTURE: act on control-file requests at all */
    double budget_s;     /* GPUFL_REMOTE_CAPTURE_BUDGET: seconds of their windows an hour */
    struct {
        int64_t at;
        double s;
    } spent[SPENT_N];
    size_t nspent;
} g_cap = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake_r = -1, .wake_w = -1};

/* ------------------------------------------------------------------------------------------------ parsing */

/* "2s", "500ms", "1.5m", "1h", "3" (seconds): seconds, or -1. */
static double duration_s(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    size_t i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (!i) return -1;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == f) return -1;
    }
    char num[64];
    if (i >= sizeof num) return -1;
    memcpy(num, s, i);
    num[i] = 0;
    double v = strtod(num, NULL);
    size_t u = i;
    while (u < n && (s[u] == ' ' || s[u] == '\t')) u++;
    size_t un = n - u;
    const char *unit = s + u;
#define UNIT(lit) (un == sizeof(lit) - 1 && !memcmp(unit, lit, un))
    if (!un || UNIT("s")) return v;
    if (UNIT("ms")) return v * 1e-3;
    if (UNIT("m") || UNIT("min")) return v * 60;
    if (UNIT("h")) return v * 3600;
#undef UNIT
    return -1;
}

static int all_digits(const char *s, size_t n) {
    while (n && *s == ' ') s++, n--;
    while (n && s[n - 1] == ' ') n--;
    if (!n) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return n < 18;
}

/* gpufl.client.capture.parse in C: 0, or -1 with why not in err. */
int cap_parse(const char *text, CapPlan *p, char *err, size_t errn) {
    char t[sizeof p->text];
    size_t n = 0;
    memset(p, 0, sizeof *p);
    p->last_step = -1; /* as gpufl.client.capture.Plan: no step range */
    while (*text == ' ' || *text == '\t' || *text == '\n') text++;
    for (; text[n] && n + 1 < sizeof t; n++) t[n] = (char)(text[n] >= 'A' && text[n] <= 'Z' ? text[n] + 32 : text[n]);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\n')) n--;
    t[n] = 0;
    if (text[n] && text[n] != ' ' && text[n] != '\t' && text[n] != '\n' && n + 1 >= sizeof t) {
        snprintf(err, errn, "capture mode too long");
        return -1;
    }
    if (!n || !strcmp(t, "continuous")) return p->mode = CM_CONTINUOUS, snprintf(p->text, sizeof p->text, "continuous"), 0;
    if (!strcmp(t, "on-demand") || !strcmp(t, "ondemand"))
        return p->mode = CM_ON_DEMAND, snprintf(p->text, sizeof p->text, "on-demand"), 0;
    if (!strcmp(t, "windows")) snprintf(t, sizeof t, "%s", CAP_WINDOWS_PRESET);
    if (!strncmp(t, "windows:", 8)) {
        const char *body = t + 8, *slash = strchr(body, '/');
        double on = duration_s(body, slash ? (size_t)(slash - body) : strlen(body));
        double period = slash ? duration_s(slash + 1, strlen(slash + 1)) : 0;
        if (!(on > 0 && period > on && period < 1e9)) {
            snprintf(err, errn, "capture '%s': want windows:ON/PERIOD with 0 < ON < PERIOD, e.g. windows:2s/60s", t);
            return -1;
        }
        p->mode = CM_WINDOWS;
        p->on_ns = (int64_t)(on * 1e9);
        p->period_ns = (int64_t)(period * 1e9);
        snprintf(p->text, sizeof p->text, "%s", t);
        return 0;
    }
    if (!strncmp(t, "steps:", 6)) {
        const char *body = t + 6, *dash = strchr(body, '-');
        if (dash && all_digits(body, (size_t)(dash - body)) && all_digits(dash + 1, strlen(dash + 1)) &&
            atoll(dash + 1) >= atoll(body)) {
            p->mode = CM_STEPS;
            p->first_step = atoll(body);
            p->last_step = atoll(dash + 1);
            snprintf(p->text, sizeof p->text, "%s", t);
            return 0;
        }
        snprintf(err, errn, "capture '%s': want steps:FIRST-LAST, e.g. steps:100-110", t);
        return -1;
    }
    snprintf(err, errn, "capture '%s': want continuous, windows[:ON/PERIOD], on-demand or steps:FIRST-LAST", t);
    return -1;
}

/* ------------------------------------------------------------------------------------------------ records */

static void begin_record_locked(Writer *w, const char *tag, size_t *before) {
    w_before_record_locked(w);
    *before = w->pending.n;
    w_begin_line_locked(w, tag, strlen(tag));
}

static void put_str(sbuf *b, const char *key, const char *s) {
    sb_put(b, key, strlen(key));
    sb_json_str(b, s, strlen(s));
}

/* A notice record on the device stream (what the Python side would log): the reader sees why. */
void cap_notice(Writer *w, const char *code, const char *message) {
    if (!w) return;
    size_t before;
    pthread_mutex_lock(&w->mu);
    begin_record_locked(w, "notice", &before);
    KEY_I64(&w->pending, ",\"ts_ns\":", realtime_ns());
    SB_LIT(&w->pending, ",\"level\":\"warning\"");
    put_str(&w->pending, ",\"code\":", code);
    put_str(&w->pending, ",\"message\":", message);
    SB_LIT(&w->pending, ",\"engine\":\"tracing\"}\n");
    w_account_locked(w, before);
    pthread_mutex_unlock(&w->mu);
    g_cap.notices++;
}

static void write_window(const CapWindow *v, int64_t end_ns, const char *ended) {
    Writer *w = g_cap.w;
    if (!w) return;
    sbuf *b = &w->pending;
    size_t before;
    pthread_mutex_lock(&w->mu);
    begin_record_locked(w, "capture_window", &before);
    KEY_I64(b, ",\"start_ns\":", v->start_ns);
    KEY_I64(b, ",\"end_ns\":", end_ns > v->start_ns ? end_ns : v->start_ns);
    put_str(b, ",\"trigger\":{\"mode\":", CAP_MODES[g_cap.plan.mode]);
    put_str(b, ",\"kind\":", v->kind);
    SB_LIT(b, ",\"seconds\":");
    sb_f(b, v->seconds, 6);
    if (!strcmp(v->kind, "signal")) SB_LIT(b, ",\"signal\":\"SIGUSR2\"");
    if (!strcmp(v->kind, "control_file")) {
        put_str(b, ",\"control_file\":", g_cap.control_path);
        put_str(b, ",\"request_id\":", v->request_id);
    }
    SB_LIT(b, "},\"engines\":[\"tracing\"]");
    if (v->has_requester) put_str(b, ",\"requester\":", v->requester);
    put_str(b, ",\"ended\":", ended);
    if (v->extended) KEY_U64(b, ",\"extended\":", v->extended);
    if (v->refused) KEY_U64(b, ",\"refused\":", v->refused);
    SB_LIT(b, "}\n");
    w_account_locked(w, before);
    pthread_mutex_unlock(&w->mu);
    g_cap.windows++;
}

/* The answer to a control-file request (contract v7): what became of it. `on`: tracing switched (opened,
 * extended); `missing`: the CAP_E_* asked for that this build does not run. */
static void write_answer(const ControlRequest *r, CapOutcome outcome, const char *reason, int on, unsigned missing) {
    Writer *w = g_cap.w;
    if (!w) return;
    sbuf *b = &w->pending;
    size_t before;
    pthread_mutex_lock(&w->mu);
    begin_record_locked(w, "capture_request", &before);
    KEY_I64(b, ",\"ts_ns\":", g_cap.clock());
    put_str(b, ",\"request_id\":", r->id);
    put_str(b, ",\"outcome\":", CAP_OUTCOMES[outcome]);
    if (reason) put_str(b, ",\"reason\":", reason);
    if (on) SB_LIT(b, ",\"engines\":[\"tracing\"]");
    if (missing) {
        SB_LIT(b, ",\"missing\":[");
        const char *sep = "";
        if (missing & CAP_E_TRACING) SB_LIT(b, "\"tracing\""), sep = ",";
        if (missing & CAP_E_SASS) sb_put(b, sep, strlen(sep)), SB_LIT(b, "\"sass\""), sep = ",";
        if (missing & CAP_E_PC_SAMPLING) sb_put(b, sep, strlen(sep)), SB_LIT(b, "\"pc_sampling\"");
        SB_LIT(b, "]");
    }
    if (r->has_requester) put_str(b, ",\"requester\":", r->requester);
    SB_LIT(b, "}\n");
    w_account_locked(w, before);
    pthread_mutex_unlock(&w->mu);
}

/* ------------------------------------------------------------------------------------------------ windows */

/* The injection build's switch: what _native.capture(on) does in the extension. */
void cap_switch_tracing(int on) {
    g_trace.capture_off = !on;
    g_trace.capture_switches++;
    if (!g_trace.active) return; /* start_tracing honours capture_off */
    capture_switch(on);
    g_trace.capture_applied++;
}

static void open_locked(int64_t now, const char *kind, double seconds, const char *requester, const char *rid) {
    CapWindow *v = &g_cap.win;
    memset(v, 0, sizeof *v);
    v->open = 1;
    v->start_ns = now;
    v->deadline_ns = now + (int64_t)(seconds * 1e9);
    v->kind = kind;
    v->seconds = seconds;
    v->has_requester = requester != NULL;
    snprintf(v->requester, sizeof v->requester, "%s", requester ? requester : "");
    snprintf(v->request_id, sizeof v->request_id, "%s", rid ? rid : "");
    cap_switch_tracing(1);
}

static void close_locked(const char *ended) {
    CapWindow v = g_cap.win;
    g_cap.win.open = 0;
    cap_switch_tracing(0);
    write_window(&v, g_cap.clock(), ended);
}

/* A trigger: open a window of `seconds` (≤ 0: GPUFL_CAPTURE_SECONDS), or extend / refuse the open one. */
CapOutcome cap_request(const char *kind, double seconds, const char *requester, const char *rid) {
    if (!g_cap.on) return CAP_NONE;
    if (g_cap.plan.mode == CM_CONTINUOUS) return CAP_CONTINUOUS;
    if (!(seconds > 0)) seconds = (double)g_cap.default_ns / 1e9;
    pthread_mutex_lock(&g_cap.mu);
    int64_t now = g_cap.clock(), deadline = now + (int64_t)(seconds * 1e9);
    CapOutcome r = CAP_OPENED;
    CapWindow *v = &g_cap.win;
    if (!g_cap.on) r = CAP_NONE; /* shut down meanwhile */
    else if (!v->open) open_locked(now, kind, seconds, requester, rid);
    else if (deadline > v->deadline_ns) v->deadline_ns = deadline, v->extended++, r = CAP_EXTENDED;
    else v->refused++, r = CAP_REFUSED;
    pthread_mutex_unlock(&g_cap.mu);
    return r;
}

/* Close the open window now (a test hook's capture_stop; 0: none was open). */
int cap_stop(void) {
    pthread_mutex_lock(&g_cap.mu);
    int was = g_cap.on && g_cap.win.open;
    if (was) close_locked("stopped");
    pthread_mutex_unlock(&g_cap.mu);
    return was;
}

/* Apply a pending SIGUSR2, close a window that ran out, open a scheduled one; ns until the next thing due. */
int64_t cap_tick(void) {
    if (!g_cap.on) return POLL_NS;
    if (g_cap.signal_pending) {
        g_cap.signal_pending = 0;
        cap_request("signal", 0, NULL, NULL);
    }
    pthread_mutex_lock(&g_cap.mu);
    int64_t now = g_cap.clock();
    CapWindow *v = &g_cap.win; /* after a shutdown: none open, none scheduled */
    if (v->open && now >= v->deadline_ns) close_locked("duration");
    if (g_cap.next_scheduled && now >= g_cap.next_scheduled) {
        while (g_cap.next_scheduled <= now) g_cap.next_scheduled += g_cap.plan.period_ns; /* missed ones: not made up */
        if (!v->open) open_locked(now, "schedule", (double)g_cap.plan.on_ns / 1e9, NULL, NULL);
        else v->refused++; /* a requested window is open: the scheduled one is not opened */
    }
    int64_t due = g_cap.next_scheduled;
    if (v->open && (!due || v->deadline_ns < due)) due = v->deadline_ns;
    pthread_mutex_unlock(&g_cap.mu);
    return due ? (due > now ? due - now : 0) : POLL_NS;
}

/* ------------------------------------------------------------------------------------------------ the control file */

static int seen_before(const char *id) {
    uint64_t h = hash_str(0xcbf29ce484222325ULL, id) | 1;
    for (size_t i = 0; i < g_cap.nseen && i < SEEN_N; i++)
        if (g_cap.seen[i] == h) return 1;
    g_cap.seen[g_cap.nseen++ % SEEN_N] = h;
    return 0;
}

/* Read the whole regular file (at most 64 KiB, as the Python side reads); -1 with why not. */
static ssize_t read_small(const char *path, char *buf, size_t cap, const char **why) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return *why = "cannot be opened", -1;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) *why = "not a regular file";
    else if ((n = read(fd, buf, cap)) < 0) *why = "cannot be read";
    else if ((size_t)n == cap) *why = "larger than 64 KiB", n = -1;
    close(fd);
    return n;
}

static void ignored(const char *why) {
    char msg[sizeof g_cap.control_path + 160];
    snprintf(msg, sizeof msg, "ignored %s: %s", g_cap.control_path, why);
    cap_notice(g_cap.w, "capture_control_file", msg);
}

/* Act on one control-file request and answer it (gpufl.client.capture.Capture._answer's rules): remote
 * capture off, no engine asked for that runs here (tracing: the deep engines are not in this build), the
 * hour's budget spent, or one window at a time refuse it; otherwise it opens or extends the window. */
static CapOutcome cap_answer(const ControlRequest *r) {
    unsigned want = r->engines ? r->engines : CAP_E_TRACING, missing = want & ~(unsigned)CAP_E_TRACING;
    if (!g_cap.remote) return write_answer(r, CAP_REFUSED, "remote_capture_disabled", 0, missing), CAP_REFUSED;
    if (!(want & CAP_E_TRACING)) return write_answer(r, CAP_REFUSED, "engine_unavailable", 0, missing), CAP_REFUSED;
    double cost = r->has_seconds ? r->seconds : (double)g_cap.default_ns / 1e9, total = cost;
    pthread_mutex_lock(&g_cap.mu);
    int64_t now = g_cap.clock();
    size_t kept = 0;
    for (size_t i = 0; i < g_cap.nspent; i++) /* the last hour's */
        if (now - g_cap.spent[i].at < HOUR_NS) g_cap.spent[kept++] = g_cap.spent[i], total += g_cap.spent[i].s;
    g_cap.nspent = kept;
    pthread_mutex_unlock(&g_cap.mu);
    if (total > g_cap.budget_s || kept == SPENT_N)
        return write_answer(r, CAP_REFUSED, "budget_spent", 0, missing), CAP_REFUSED;
    CapOutcome out = cap_request("control_file", r->has_seconds ? r->seconds : 0, r->has_requester ? r->requester : NULL, r->id);
    if (out == CAP_NONE) return CAP_NONE; /* shut down meanwhile */
    if (out == CAP_REFUSED) return write_answer(r, CAP_REFUSED, "window_open", 0, missing), CAP_REFUSED;
    pthread_mutex_lock(&g_cap.mu);
    g_cap.spent[g_cap.nspent].at = now, g_cap.spent[g_cap.nspent++].s = cost;
    pthread_mutex_unlock(&g_cap.mu);
    write_answer(r, out, NULL, 1, missing);
    return out;
}

/* Act on the control file if it changed since the last look: a request not seen before (by id), written
 * after this session started, for this session or every session in the folder, opens a window. */
CapOutcome cap_poll_control(void) {
    static char buf[65536 + 1];
    struct stat st;
    if (!g_cap.on || !g_cap.control_path[0] || stat(g_cap.control_path, &st)) return CAP_NONE;
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    if (mtime == g_cap.control_mtime) return CAP_NONE;
    g_cap.control_mtime = mtime;
    if (mtime < g_cap.started_ns) return CAP_NONE; /* left from before this session: not meant for it */
    const char *why = NULL;
    char err[128];
    ControlRequest r;
    ssize_t n = read_small(g_cap.control_path, buf, sizeof buf - 1, &why);
    if (n < 0) return ignored(why), CAP_NONE;
    if (control_parse(buf, (size_t)n, &r, g_cap.sid, err, sizeof err)) return ignored(err), CAP_NONE;
    if (seen_before(r.id) || (r.has_session && (!r.session_is_string || strcmp(r.session_id, g_cap.sid))))
        return CAP_NONE;
    if (r.has_session_ids && !r.names_me) return CAP_NONE; /* some of the folder's sessions, not this one */
    if (r.has_steps) return ignored("steps do not apply to a program without Python (gpufl.step())"), CAP_NONE;
    if (r.has_seconds && !(r.seconds > 0)) return ignored("a capture's seconds must be positive"), CAP_NONE;
    return cap_answer(&r);
}

/* ------------------------------------------------------------------------------------------------ lifecycle */

/* The controller's state for one session; nothing runs yet (cap_start: the thread, SIGUSR2, the first
 * window). The writer must outlive cap_shutdown. -1 in continuous mode: nothing to do. */
int cap_begin(const CapPlan *plan, Writer *w, const char *sid, const char *log_dir, double default_s,
              int64_t (*clock)(void)) {
    if (g_cap.on || plan->mode == CM_CONTINUOUS) return -1;
    pthread_mutex_lock(&g_cap.mu);
    g_cap.plan = *plan;
    g_cap.w = w;
    snprintf(g_cap.sid, sizeof g_cap.sid, "%s", sid);
    if (log_dir && *log_dir) snprintf(g_cap.control_path, sizeof g_cap.control_path, "%s/%s", log_dir, CAP_CONTROL_FILE);
    else g_cap.control_path[0] = 0;
    g_cap.default_ns = (int64_t)((default_s > 0 && default_s < 1e9 ? default_s : 10.0) * 1e9);
    g_cap.clock = clock ? clock : realtime_ns;
    g_cap.started_ns = g_cap.clock();
    g_cap.next_scheduled = plan->mode == CM_WINDOWS ? g_cap.started_ns : 0;
    memset(&g_cap.win, 0, sizeof g_cap.win);
    g_cap.control_mtime = g_cap.nseen = 0;
    g_cap.signal_pending = g_cap.stop = 0;
    g_cap.windows = g_cap.notices = 0;
    const char *remote = getenv("GPUFL_REMOTE_CAPTURE"), *budget = getenv("GPUFL_REMOTE_CAPTURE_BUDGET");
    g_cap.remote = !remote || !(!*remote || !strcasecmp(remote, "0") || !strcasecmp(remote, "false") ||
                                !strcasecmp(remote, "no") || !strcasecmp(remote, "off"));
    char *endp = NULL;
    double b = budget ? strtod(budget, &endp) : 120.0;
    g_cap.budget_s = budget && (endp == budget || !(b >= 0)) ? 120.0 : b; /* unreadable: the default */
    g_cap.nspent = 0;
    g_cap.on = 1;
    pthread_mutex_unlock(&g_cap.mu);
    if (plan->mode == CM_STEPS)
        cap_notice(w, "capture_steps_without_python",
                   "capture steps:FIRST-LAST needs gpufl.step(), which a program without Python has not: "
                   "it runs as on-demand (SIGUSR2, the control file)");
    return 0;
}

static void on_usr2(int sig) {
    (void)sig;
    int saved = errno;
    g_cap.signal_pending = 1;
    if (g_cap.wake_w >= 0 && write(g_cap.wake_w, "x", 1) < 0) { /* full: it is awake anyway */ }
    errno = saved;
}

static void *cap_main(void *arg) {
    (void)arg;
    int64_t next_poll = 0;
    while (!g_cap.stop) {
        int64_t wait = cap_tick(), mono = monotonic_ns();
        if (mono >= next_poll) {
            next_poll = mono + POLL_NS;
            cap_poll_control();
        }
        int64_t to_poll = next_poll - monotonic_ns();
        if (to_poll < wait) wait = to_poll;
        if (wait < 0) wait = 0;
        struct pollfd p = {.fd = g_cap.wake_r, .events = POLLIN};
        if (poll(&p, 1, (int)((wait + 999999) / 1000000)) > 0) {
            char drain[64];
            while (read(g_cap.wake_r, drain, sizeof drain) > 0) {}
        }
    }
    return NULL;
}

/* A forked child has no controller thread (threads do not survive fork) and is not this session's program:
 * its copy of the controller does nothing, and never joins a thread that is not there. */
static void cap_after_fork_child(void) {
    g_cap.thread_on = 0;
    g_cap.on = 0;
    g_cap.usr2_installed = 0;
}

/* SIGUSR2 is taken only where the program has no handler of its own (a handler is never replaced). */
static void install_usr2(void) {
    struct sigaction old, sa;
    if (sigaction(SIGUSR2, NULL, &old) || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) return;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    g_cap.usr2_installed = sigaction(SIGUSR2, &sa, NULL) == 0;
}

/* The thread (its signals blocked: the program's signals go to the program's threads), SIGUSR2, and the
 * mode's first window. 0 on success. */
int cap_start(int with_thread) {
    if (!g_cap.on) return -1;
    int fds[2];
    if (with_thread) {
        if (pipe(fds)) return -1;
        for (int i = 0; i < 2; i++) fcntl(fds[i], F_SETFD, FD_CLOEXEC), fcntl(fds[i], F_SETFL, O_NONBLOCK);
        g_cap.wake_r = fds[0];
        g_cap.wake_w = fds[1];
        if (!g_cap.atfork_set) g_cap.atfork_set = pthread_atfork(NULL, NULL, cap_after_fork_child) == 0;
        install_usr2();
    }
    cap_tick();
    if (!with_thread) return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g_cap.thread_on = pthread_create(&g_cap.thread, NULL, cap_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return g_cap.thread_on ? 0 : -1;
}

/* Close the open window (`shutdown`), end the thread, give SIGUSR2 back. Before the writer finishes. */
void cap_shutdown(void) {
    if (!g_cap.on) return;
    pthread_mutex_lock(&g_cap.mu);
    if (g_cap.win.open) close_locked("shutdown");
    g_cap.next_scheduled = 0;
    g_cap.on = 0;
    g_cap.stop = 1;
    pthread_mutex_unlock(&g_cap.mu);
    if (g_cap.wake_w >= 0 && write(g_cap.wake_w, "x", 1) < 0) { /* full: it is awake anyway */ }
    if (g_cap.thread_on) pthread_join(g_cap.thread, NULL);
    g_cap.thread_on = 0;
    struct sigaction cur;
    if (g_cap.usr2_installed && !sigaction(SIGUSR2, NULL, &cur) && cur.sa_handler == on_usr2) signal(SIGUSR2, SIG_DFL);
    g_cap.usr2_installed = 0;
    if (g_cap.wake_r >= 0) close(g_cap.wake_r);
    if (g_cap.wake_w >= 0) close(g_cap.wake_w);
    g_cap.wake_r = g_cap.wake_w = -1;
    g_cap.w = NULL;
}

/* (open, windows written, notices written, ns since the session started, the open window's deadline) */
void cap_state(int *open, uint64_t *windows, uint64_t *notices, int64_t *deadline) {
    pthread_mutex_lock(&g_cap.mu);
    *open = g_cap.win.open;
    *windows = g_cap.windows;
    *notices = g_cap.notices;
    *deadline = g_cap.win.open ? g_cap.win.deadline_ns : 0;
    pthread_mutex_unlock(&g_cap.mu);
}

/* runspace-shim: the native supervisor of one command job (handed over by supervisor/runner/shim.py).
 *
 * The job process validates the params, builds the argv and starts the command with its stdout
 * and stderr on a pipe, then execs this program in its own place (the command stays its child).
 * It turns each line of the pipe into a timestamped job-log line (fd 1), progress
 * (`::progress DONE TOTAL [message]`) or a user-log line (`::log text`) until the command exits
 * (not until the pipe closes: a background child may hold it), and writes result.json, exactly as the Python relay in supervisor/command.py does. It exists
 * for memory: a waiting CPython process dirties ~3 MB of its own, this ~0.1 MB.
 *
 * usage: runspace-shim RESULT PROGRESS EVENTS USER_LOG USER_LOG_FD JOB_ID JOB PID OUTPUT_FD NAME
 *                      MAX_LOG_BYTES STARTED STARTED_FD
 *   EVENTS is "" when there is no progress socket; USER_LOG_FD is -1 unless the job process
 *   holds the user log open for us (a job run as another user may append but not open it);
 *   PID is the command, OUTPUT_FD the read end of its output pipe, NAME its argv[0];
 *   MAX_LOG_BYTES is -1 for no cap; STARTED_FD is the job process's fd of its run-once guard
 *   file STARTED, or -1 when it no longer holds it (job_main.write_result).
 *        runspace-shim --protocol   prints PROTOCOL: shim.py uses no binary built for another.
 *
 * The progress protocol's grammar (shared with command.py): fields are separated by ASCII
 * whitespace, and DONE and TOTAL are ASCII decimal numbers (or inf, infinity, nan).
 */
#define PROTOCOL 6

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 65536 /* logs.MAX_LINE_BYTES */
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* Linux 5.3; the same number on every architecture */
#endif
#define PROGRESS_INTERVAL 0.1 /* at most ten progress reports a second reach the daemon */

struct buf {
    char *p;
    size_t len, cap;
};

static struct {
    const char *result, *progress, *events, *user_log, *job_id, *job, *started;
    int user_log_fd, started_fd;
    long long log_room; /* bytes the job log may still take (logs.CappedOutput); -1: no cap */
    long long log_cap;
    int dropping;
} cfg;

static volatile sig_atomic_t child; /* the command's pid until it is reaped, then 0 */
static double last_progress_sent = -1.0;

/* ---- growable buffers ---- */

/* Room for n more bytes and the terminating NUL. */
static void buf_reserve(struct buf *b, size_t n) {
    if (b->len + n + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) _exit(70); /* EX_SOFTWARE: out of memory in a 0.1 MB program */
    b->p = p;
    b->cap = cap;
}

static void buf_add(struct buf *b, const char *data, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_addf(struct buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- text: UTF-8 repair, one-line form, JSON ---- */

/* The UTF-8 sequence at s (n bytes left): its length when valid (*ok = 1), else the length of
 * its longest invalid prefix, which Python's decode(errors="replace") turns into one U+FFFD. */
static size_t utf8_scan(const unsigned char *s, size_t n, int *ok) {
    unsigned char c = s[0], lo = 0x80, hi = 0xBF; /* the second byte's range (no overlongs, surrogates) */
    size_t len, i = 1;
    *ok = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return *ok = 0, 1;
    if (i < n && s[i] >= lo && s[i] <= hi)
        for (i = 2; i < len && i < n && (s[i] & 0xC0) == 0x80; i++) {}
    *ok = i == len;
    return i;
}

static void add_utf8(struct buf *out, const char *s, size_t n) {
    int ok;
    for (size_t i = 0, len; i < n; i += len) {
        len = utf8_scan((const unsigned char *)s + i, n - i, &ok);
        if (ok) buf_add(out, s + i, len);
        else buf_adds(out, "\xEF\xBF\xBD");
    }
}

/* logs.one_line: a log entry is one line, so CR and LF are written as \r and \n; the other
 * control characters but tab (C0, DEL, and C1 as UTF-8 C2 80-9F) as \xNN (logs.escape_controls).
 * `s` is valid UTF-8 (add_utf8 made it so). */
static void add_one_line(struct buf *out, const char *s, size_t n) {
    for (const char *end = s + n; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\r') buf_adds(out, "\\r");
        else if (c == '\n') buf_adds(out, "\\n");
        else if ((c < 0x20 && c != '\t') || c == 0x7f) buf_addf(out, "\\x%02x", c);
        else if (c == 0xC2 && s + 1 < end && (unsigned char)s[1] >= 0x80 && (unsigned char)s[1] <= 0x9F)
            buf_addf(out, "\\x%02x", (unsigned char)*++s);
        else buf_add(out, s, 1);
    }
}

static void add_json_string(struct buf *out, const char *s, size_t n) {
    buf_adds(out, "\"");
    for (const char *end = s + n; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') buf_addf(out, "\\%c", c);
        else if (c < 0x20) buf_addf(out, "\\u%04x", c);
        else buf_add(out, s, 1);
    }
    buf_adds(out, "\"");
}

/* As Python's json.dumps writes a float: shortest round-trip digits, NaN and Infinity. */
static void add_json_number(struct buf *out, double x) {
    if (isnan(x)) buf_adds(out, "NaN");
    else if (isinf(x)) buf_adds(out, x > 0 ? "Infinity" : "-Infinity");
    else {
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.15g", x);
        if (strtod(tmp, NULL) != x) snprintf(tmp, sizeof tmp, "%.17g", x);
        buf_adds(out, tmp);
    }
}

/* As Python formats a float with :g (C prints a negative NaN as -nan). */
static void add_g(struct buf *out, double x) {
    if (isnan(x)) buf_adds(out, "nan");
    else buf_addf(out, "%g", x);
}

/* ---- log lines ---- */

/* logs.stamp: 2026-01-31T12:00:00.123Z, UTC, milliseconds truncated. */
static void add_stamp(struct buf *out) {
    struct timespec ts;
    struct tm tm;
    char tmp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    buf_addf(out, "%s.%03ldZ ", tmp, ts.tv_nsec / 1000000);
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* a full disk loses the line, as in the Python relay */
        p += w, n -= (size_t)w;
    }
}

/* One write() per line, like logs.append_line: lines of concurrent writers never tear. */
static void job_line(const char *text, size_t n) {
    struct buf line = {0};
    add_stamp(&line);
    add_one_line(&line, text, n);
    buf_adds(&line, "\n");
    if (cfg.log_room < 0 || (long long)line.len <= cfg.log_room) {
        write_all(1, line.p, line.len);
        if (cfg.log_room >= 0) cfg.log_room -= (long long)line.len;
    } else if (!cfg.dropping) { /* logs.CappedOutput: one marker, then the rest is dropped */
        struct buf mark = {0};
        cfg.dropping = 1;
        add_stamp(&mark);
        buf_addf(&mark, "runspace: this job's output reached max_log_bytes (%lld); the rest is dropped\n", cfg.log_cap);
        write_all(1, mark.p, mark.len);
        free(mark.p);
    }
    free(line.p);
}

static void user_event(const char *text, size_t n) {
    struct buf line = {0};
    add_stamp(&line);
    buf_addf(&line, "%s %s ", cfg.job_id, cfg.job);
    add_one_line(&line, text, n);
    buf_adds(&line, "\n");
    int fd = cfg.user_log_fd;
    if (fd < 0) fd = open(cfg.user_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        struct buf msg = {0};
        buf_addf(&msg, "runspace: cannot write user log: [Errno %d] %s: '%s'", errno, strerror(errno), cfg.user_log);
        job_line(msg.p, msg.len);
        free(msg.p);
    } else {
        write_all(fd, line.p, line.len);
        if (fd != cfg.user_log_fd) close(fd);
    }
    free(line.p);
}

/* ---- run-dir files and the daemon's progress socket ---- */

/* files.write_json_atomic: a fresh O_EXCL|O_NOFOLLOW temp file renamed over the target, so a
 * symlink planted in the run dir never redirects the write. */
static void write_json_atomic(const char *path, const struct buf *json) {
    struct buf tmp = {0};
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    buf_add(&tmp, path, dir_len);
    buf_addf(&tmp, ".%s.%d", path + dir_len, (int)getpid());
    unlink(tmp.p);
    int fd = open(tmp.p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) {
        write_all(fd, json->p, json->len);
        close(fd);
    }
    if (fd < 0 || rename(tmp.p, path) < 0) {
        struct buf msg = {0};
        buf_addf(&msg, "runspace: cannot write %s: %s", path, strerror(errno));
        job_line(msg.p, msg.len);
        free(msg.p);
    }
    free(tmp.p);
}

static void send_event(const struct buf *json) {
    if (!*cfg.events) return;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(cfg.events) >= sizeof addr.sun_path) return;
    strcpy(addr.sun_path, cfg.events);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    /* Errors are dropped: the daemon is down or busy and reads progress.json when it looks. */
    sendto(fd, json->p, json->len, 0, (struct sockaddr *)&addr, sizeof addr);
    close(fd);
}

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* job_main.FileReporter.progress. The daemon reads only the last report in progress.json, so
 * each report carries the last message given, not just its own (a burst may skip the report
 * that had it). */
static struct buf last_message;
static int have_message;

static void report_progress(double done, double total, const char *message, size_t message_len) {
    if (message) {
        last_message.len = 0;
        buf_add(&last_message, message, message_len);
        have_message = 1;
        struct buf ev = {0};
        buf_adds(&ev, "progress ");
        add_g(&ev, done);
        if (total != 0) buf_adds(&ev, "/"), add_g(&ev, total);
        buf_adds(&ev, ": ");
        buf_add(&ev, message, message_len);
        user_event(ev.p, ev.len);
        free(ev.p);
    }
    double now = monotonic();
    int final = done >= total;
    if (!final && !message && last_progress_sent >= 0 && now - last_progress_sent < PROGRESS_INTERVAL) return;
    last_progress_sent = now;
    struct buf json = {0};
    buf_adds(&json, "{\"id\": ");
    add_json_string(&json, cfg.job_id, strlen(cfg.job_id));
    buf_adds(&json, ", \"progress\": ");
    add_json_number(&json, done);
    buf_adds(&json, ", \"total\": ");
    add_json_number(&json, total);
    buf_adds(&json, ", \"message\": ");
    if (have_message) add_json_string(&json, last_message.p, last_message.len);
    else buf_adds(&json, "null");
    buf_adds(&json, "}");
    write_json_atomic(cfg.progress, &json);
    send_event(&json);
    free(json.p);
}

/* ---- the command's output ---- */

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

static const char *skip_space(const char *s, const char *end) {
    while (s < end && is_space(*s)) s++;
    return s;
}

/* A decimal number (or inf, infinity, nan): what command._NUMBER matches. */
static int is_number_word(const char *w, size_t n) {
    const char *digits = "0123456789+-.eE";
    size_t signs = n && (w[0] == '+' || w[0] == '-');
    static const char *const words[] = {"inf", "infinity", "nan"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (n - signs == strlen(words[i]) && strncasecmp(w + signs, words[i], n - signs) == 0) return 1;
    for (size_t i = 0; i < n; i++)
        if (!strchr(digits, w[i]) || !w[i]) return 0;
    return n > 0;
}

/* The next word of [*s, end) as a number; strtod must take all of it. */
static int next_number(const char **s, const char *end, double *out) {
    const char *start = skip_space(*s, end), *stop = start;
    while (stop < end && !is_space(*stop)) stop++;
    size_t n = (size_t)(stop - start);
    if (!is_number_word(start, n)) return 0;
    struct buf word = {0};
    buf_add(&word, start, n);
    char *rest;
    *out = strtod(word.p, &rest);
    int whole = rest == word.p + n;
    free(word.p);
    *s = stop;
    return whole;
}

/* command._handle_line: `::progress DONE TOTAL [message]`, `::log text`, or a job-log line.
 * `line` is NUL-terminated but may hold NULs of its own: n is its length. */
static void handle_line(const char *line, size_t n) {
    const char *end = line + n;
    if (strncmp(line, "::progress ", 11) == 0) {
        const char *rest = line + 11;
        double done, total;
        if (next_number(&rest, end, &done) && next_number(&rest, end, &total)) {
            rest = skip_space(rest, end);
            report_progress(done, total, rest < end ? rest : NULL, (size_t)(end - rest));
            return;
        }
    } else if (strncmp(line, "::log ", 6) == 0) {
        job_line(line + 6, n - 6);
        user_event(line + 6, n - 6);
        return;
    }
    job_line(line, n);
}

#define MAX_CHUNKS_PER_READ 16 /* 1 MiB of output between two looks at whether the command has exited */

static void handle_bytes(const char *s, size_t n) {
    struct buf line = {0};
    add_utf8(&line, s, n);
    handle_line(line.p ? line.p : "", line.len);
    free(line.p);
}

/* Split what was read into lines and handle each; `pending` keeps a line not ended yet. */
static void add_output(struct buf *pending, const char *chunk, size_t n) {
    size_t scanned = pending->len; /* bytes before it hold no newline */
    buf_add(pending, chunk, n);
    char *start = pending->p, *nl, *from = pending->p + scanned;
    while ((nl = memchr(from, '\n', pending->len - (size_t)(from - pending->p)))) {
        handle_bytes(start, nl - start);
        start = from = nl + 1;
    }
    pending->len -= start - pending->p;
    memmove(pending->p, start, pending->len);
    /* No newline in MAX_LINE bytes: out as a line of its own (as command.py does), so a
     * command that never ends a line cannot grow our memory. */
    while (pending->len > MAX_LINE) {
        size_t cut = MAX_LINE;
        while (cut > 0 && ((unsigned char)pending->p[cut] & 0xC0) == 0x80) cut--; /* not inside a character */
        if (cut == 0) cut = MAX_LINE;
        handle_bytes(pending->p, cut);
        pending->len -= cut;
        memmove(pending->p, pending->p + cut, pending->len);
    }
}

/* What the (non-blocking) pipe holds now, bounded: a leftover may write without end. 0 at EOF. */
static int read_available(int fd, struct buf *pending) {
    static char chunk[65536];
    for (int i = 0; i < MAX_CHUNKS_PER_READ; i++) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 1; /* EAGAIN: nothing more for now */
        if (n == 0) return 0;
        add_output(pending, chunk, (size_t)n);
    }
    return 1;
}

/* Output lines until the command's main process exits, then what it wrote before: a background
 * child still holding the pipe is a leftover (the daemon kills it), not the job. */
static void relay_output(int fd, pid_t pid) {
    struct buf pending = {0};
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* < 0 (an old kernel): until EOF, as before */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    int open = 1;
    while (open || pidfd >= 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue; /* SIGTERM, forwarded */
            break;
        }
        if (open && !read_available(fd, &pending)) open = 0, fds[0].fd = -1; /* after the exit too */
        if (pidfd >= 0 && (fds[1].revents & POLLIN)) break;
    }
    if (pidfd >= 0) close(pidfd);
    if (pending.len) handle_bytes(pending.p, pending.len); /* a last line without its newline */
    free(pending.p);
}

/* ---- the command's process and its outcome ---- */

static const char *signal_name(int sig) {
    static const char *names[] = {
        [SIGHUP] = "SIGHUP",   [SIGINT] = "SIGINT",       [SIGQUIT] = "SIGQUIT", [SIGILL] = "SIGILL",
        [SIGTRAP] = "SIGTRAP", [SIGABRT] = "SIGABRT",     [SIGBUS] = "SIGBUS",   [SIGFPE] = "SIGFPE",
        [SIGKILL] = "SIGKILL", [SIGUSR1] = "SIGUSR1",     [SIGSEGV] = "SIGSEGV", [SIGUSR2] = "SIGUSR2",
        [SIGPIPE] = "SIGPIPE", [SIGALRM] = "SIGALRM",     [SIGTERM] = "SIGTERM", [SIGCHLD] = "SIGCHLD",
        [SIGCONT] = "SIGCONT", [SIGSTOP] = "SIGSTOP",     [SIGTSTP] = "SIGTSTP", [SIGTTIN] = "SIGTTIN",
        [SIGTTOU] = "SIGTTOU", [SIGURG] = "SIGURG",       [SIGXCPU] = "SIGXCPU", [SIGXFSZ] = "SIGXFSZ",
        [SIGVTALRM] = "SIGVTALRM", [SIGPROF] = "SIGPROF", [SIGWINCH] = "SIGWINCH", [SIGIO] = "SIGIO",
        [SIGPWR] = "SIGPWR",   [SIGSYS] = "SIGSYS",       [SIGSTKFLT] = "SIGSTKFLT",
    };
    if (sig > 0 && sig < (int)(sizeof names / sizeof *names) && names[sig]) return names[sig];
    if (sig == SIGRTMIN) return "SIGRTMIN"; /* as Python's signal.Signals names them */
    if (sig == SIGRTMAX) return "SIGRTMAX";
    static char other[16];
    snprintf(other, sizeof other, "signal %d", sig);
    return other;
}

/* job_main.write_result: the result written into the run-once guard file we still hold, then
 * linked as RESULT. It appears whole, as with a rename, without a new inode: on ext4 without a
 * journal each new inode costs ~0.5 ms of CPU per job here (bench/README.md). 0: not done. */
static int write_into_started(const struct buf *json) {
    if (cfg.started_fd < 0) return 0;
    int fd = cfg.started_fd, written = 1;
    cfg.started_fd = -1;
    for (size_t off = 0; off < json->len && written;) {
        ssize_t w = write(fd, json->p + off, json->len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) written = 0;
        else off += (size_t)w;
    }
    close(fd);
    /* A filesystem without hard links (or a cut-short write): the temp-file way, over whatever
     * `started` holds now, as job_main does. */
    return written && link(cfg.started, cfg.result) == 0;
}

static void write_result(const char *state, const char *error_type, const char *message, int exit_code, int sig) {
    struct buf json = {0};
    buf_addf(&json, "{\"state\": \"%s\"", state);
    if (error_type) {
        buf_addf(&json, ", \"error\": {\"type\": \"%s\", \"message\": ", error_type);
        add_json_string(&json, message, strlen(message));
        buf_adds(&json, "}");
    } else {
        buf_addf(&json, ", \"result\": {\"exit_code\": %d}", exit_code);
    }
    if (sig) buf_addf(&json, ", \"exit_code\": null, \"signal\": %d}", sig);
    else buf_addf(&json, ", \"exit_code\": %d}", exit_code);
    if (!write_into_started(&json)) write_json_atomic(cfg.result, &json);
    free(json.p);
}

static void forward_sigterm(int sig) {
    (void)sig;
    int saved = errno;
    if (child > 0) kill((pid_t)child, SIGTERM); /* the command gets its chance to clean up */
    errno = saved;
}

/* The command's outcome as result.json; the exit code is ours (1 unless it succeeded). */
static int report_outcome(pid_t pid, const char *raw_name) {
    struct buf name = {0}, msg = {0};
    add_utf8(&name, raw_name, strlen(raw_name));
    /* Ended but not reaped (WNOWAIT): its pid cannot be reused while SIGTERM may still be forwarded. */
    siginfo_t info;
    int waited, status;
    while ((waited = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT)) < 0 && errno == EINTR) {}
    child = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (waited < 0) return 70; /* not our child: the daemon says how the job process ended */
    int rc = 1;
    if (WIFSIGNALED(status)) {
        buf_addf(&msg, "%s was killed by %s", name.p, signal_name(WTERMSIG(status)));
        write_result("failed", "CommandKilled", msg.p, 0, WTERMSIG(status));
    } else if (WEXITSTATUS(status) == 0) {
        write_result("succeeded", NULL, NULL, 0, 0);
        rc = 0;
    } else {
        buf_addf(&msg, "%s exited with code %d", name.p, WEXITSTATUS(status));
        write_result("failed", "CommandFailed", msg.p, WEXITSTATUS(status), 0);
    }
    free(name.p);
    free(msg.p);
    return rc;
}

int main(int argc, char **argv) {
    /* First: exec made us dumpable, and a job's user must not take the held user-log fd
     * (pidfd_getfd) or read our memory; the Python job process was not dumpable either. */
    prctl(PR_SET_DUMPABLE, 0);
    if (argc == 2 && strcmp(argv[1], "--protocol") == 0) {
        printf("%d\n", PROTOCOL);
        return 0;
    }
    if (argc != 14) {
        fprintf(stderr, "usage: runspace-shim RESULT PROGRESS EVENTS USER_LOG USER_LOG_FD JOB_ID JOB PID OUTPUT_FD NAME"
                        " MAX_LOG_BYTES STARTED STARTED_FD\n");
        return 64; /* EX_USAGE */
    }
    cfg.result = argv[1], cfg.progress = argv[2], cfg.events = argv[3], cfg.user_log = argv[4];
    cfg.user_log_fd = atoi(argv[5]);
    cfg.job_id = argv[6], cfg.job = argv[7];
    cfg.log_cap = cfg.log_room = atoll(argv[11]);
    cfg.started = argv[12];
    cfg.started_fd = atoi(argv[13]);
    struct stat log_stat;
    if (cfg.log_room >= 0 && fstat(1, &log_stat) == 0) /* an earlier attempt's output counts */
        cfg.log_room = cfg.log_room > log_stat.st_size ? cfg.log_room - log_stat.st_size : 0;
    pid_t pid = (pid_t)atoi(argv[8]);
    int output = atoi(argv[9]);
    if (cfg.user_log_fd >= 0) fcntl(cfg.user_log_fd, F_SETFD, FD_CLOEXEC);
    if (cfg.started_fd >= 0) fcntl(cfg.started_fd, F_SETFD, FD_CLOEXEC);
    fcntl(output, F_SETFD, FD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN);
    child = pid;
    struct sigaction sa = {.sa_handler = forward_sigterm, .sa_flags = SA_RESTART};
    sigaction(SIGTERM, &sa, NULL);
    /* Only now: the job process blocked SIGTERM when it started the command (a pending one is
     * forwarded at once), and the fork server may have handed down a blocked SIGCHLD. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    relay_output(output, pid);
    return report_outcome(pid, argv[10]);
}

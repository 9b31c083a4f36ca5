/*
 * monocore guest agent: runs the host's execs and file transfers inside the
 * VM, over the virtio-serial port "monocore.agent". Protocol, limits and the
 * reasons behind them: docs/AGENT.md (keep the two in step).
 *
 * One thread, one poll loop. Every byte stream is windowed (credit per stream,
 * granted by the receiver), so neither side ever buffers more than a window
 * per stream; the agent also stops reading pipes while its queue to the port
 * is over OUTQ_SOFT. The host is trusted (it owns the VM) but the reader still
 * resynchronises on anything that does not check out, because after a
 * snapshot restore the port may hold half a frame (docs/AGENT.md "Sessions").
 *
 * Forked by init (init.c) after the guest is set up; `init agent --connect
 * SOCKET` runs the same code as an ordinary process for the protocol tests.
 */
#define _GNU_SOURCE
#include "guest-common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef AGENT_BUILD
#define AGENT_BUILD "dev"
#endif

#define PROTOCOL_VERSION 1
#define MAGIC 0x3141434DU /* "MCA1" little-endian */
#define HDR 20
#define MAX_PAYLOAD 65536
#define IN_CAP (2 * (HDR + MAX_PAYLOAD))
#define WINDOW (256 * 1024)      /* what the agent grants the host per stream (stdin, file data) */
#define DEFAULT_CREDIT (256 * 1024)
#define MAX_CREDIT (64LL << 20)
#define OUTQ_SOFT (256 * 1024)   /* stop reading pipes/files above this */
#define MAX_CHANNELS 1024        /* attached channels per session */
#define MAX_TRACKED 4096         /* attached + detached */
#define MAX_DISCARD 1024
#define POST_EXIT_BUDGET (1 << 20)
#define PTY_DRAIN_MS 100

enum {
  T_HELLO = 0x01, T_HELLO_ACK = 0x02, T_PING = 0x03, T_PONG = 0x04, T_ERROR = 0x05,
  T_EXEC = 0x10, T_STARTED = 0x11, T_DATA = 0x12, T_EOF = 0x13, T_CREDIT = 0x14,
  T_SIGNAL = 0x15, T_RESIZE = 0x16, T_EXIT = 0x17,
  T_FILE_READ = 0x20, T_FILE_WRITE = 0x21, T_FILE_INFO = 0x22, T_FILE_READY = 0x23,
  T_FILE_DONE = 0x24, T_STAT = 0x25, T_CANCEL = 0x26, T_LANE = 0x27, T_LANE_FREE = 0x28,
  T_REFRESH = 0x30, T_REFRESHED = 0x31,
};

static int known_type(int t) {
  switch (t) {
    case T_HELLO: case T_HELLO_ACK: case T_PING: case T_PONG: case T_ERROR:
    case T_EXEC: case T_STARTED: case T_DATA: case T_EOF: case T_CREDIT:
    case T_SIGNAL: case T_RESIZE: case T_EXIT:
    case T_FILE_READ: case T_FILE_WRITE: case T_FILE_INFO: case T_FILE_READY:
    case T_FILE_DONE: case T_STAT: case T_CANCEL: case T_LANE: case T_LANE_FREE: case T_REFRESH: case T_REFRESHED:
      return 1;
  }
  return 0;
}

/* ---- CRC-32 (zlib's polynomial, chainable like zlib's crc32()) ------------ */

static uint32_t crc_table[256];
static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
}
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- state ------------------------------------------------------------------ */

static struct agent_config *cfg;
static int port_fd = -1;
static int port_down;             /* virtio: the host end is not connected (POLLHUP) */
static int session_active;        /* a HELLO started the current session */
static unsigned sessions;
static int cgroups_ok;
static unsigned long exec_seq;
static char **def_env;            /* defaults for execs (the spec's, or the last REFRESH's) */
static int def_env_n;
static char *cur_hostname;

/* The bulk lane: a block device (a file in host tests) cut into LANE_SLOT_BYTES slots that the
 * host hands out; file data moves through it instead of DATA frames (docs/AGENT.md). */
static int lane_fd = -1;
static unsigned lane_slots;
static uint8_t *lane_buf;         /* one slot, page-aligned for O_DIRECT */

static uint8_t inbuf[IN_CAP];
static size_t in_start, in_end;

static uint8_t *outq;
static size_t out_off, out_len, out_cap;

enum { CH_EXEC = 1, CH_FREAD, CH_FWRITE };

struct chan {
  uint32_t id;
  int kind;
  int detached;       /* left by a previous session: output discarded, reported in HELLO_ACK */
  uint32_t old_id;
  /* exec */
  pid_t pid;
  int exited, status, timed_out;
  char spawn_err[800];
  int out_fd[3];      /* [1] stdout (or the pty master), [2] stderr */
  long long credit[3];
  long long post_exit_budget[3];
  int is_pty;
  long long pty_drain_until;
  int in_fd;          /* stdin pipe (or a dup of the pty master); -1 */
  uint8_t *in_buf;
  size_t in_len, in_unacked;
  int in_eof, in_broken;
  long long deadline; /* 0 = none */
  int kill_tree_on_exit;
  char cg[128];       /* its cgroup dir, "" when none */
  /* files */
  int fd, dirfd;
  char tmp[300], base[256], path[4096];
  mode_t mode;
  uid_t uid;
  gid_t gid;
  unsigned long long size;
  size_t unacked;
  long long fcredit;
  /* a lane read: slots the host granted this channel to fill, in order */
  int lane;
  uint8_t granted[LANE_MAX_SLOTS];
  int ngranted;
  /* a lane write: 1 while whole blocks go to the file O_DIRECT, -1 once that stopped */
  int direct;
};

static struct chan *chans[MAX_TRACKED];
static int nchans;
static int discard_fds[MAX_DISCARD];
static int ndiscard;
static char *cg_gc[256];
static int ncg_gc;

/* ---- output queue ------------------------------------------------------------ */

static void outq_reserve(size_t more) {
  if (out_off > 0 && out_off == out_len) out_off = out_len = 0;
  if (out_len + more <= out_cap) return;
  if (out_off > 0) {
    memmove(outq, outq + out_off, out_len - out_off);
    out_len -= out_off;
    out_off = 0;
    if (out_len + more <= out_cap) return;
  }
  size_t cap = out_cap ? out_cap : 65536;
  while (cap < out_len + more) cap *= 2;
  uint8_t *n = realloc(outq, cap);
  if (!n) {
    gc_log("out of memory for the output queue");
    _exit(1);
  }
  outq = n;
  out_cap = cap;
}

static size_t outq_pending(void) { return out_len - out_off; }

static void fill_header(uint8_t *h, int type, int stream, uint32_t ch, uint32_t len, const uint8_t *payload) {
  wr32(h, MAGIC);
  h[4] = (uint8_t)type;
  h[5] = (uint8_t)stream;
  h[6] = h[7] = 0;
  wr32(h + 8, ch);
  wr32(h + 12, len);
  uint32_t crc = crc32_update(0, h, 16);
  if (type != T_DATA && len) crc = crc32_update(crc, payload, len);
  wr32(h + 16, crc);
}

static void send_frame(int type, int stream, uint32_t ch, const void *payload, size_t len) {
  if (port_down) return;
  outq_reserve(HDR + len);
  uint8_t *h = outq + out_len;
  if (len) memcpy(h + HDR, payload, len);
  fill_header(h, type, stream, ch, (uint32_t)len, h + HDR);
  out_len += HDR + len;
}

/* Records: NUL-terminated key=value. */
struct recs {
  char buf[MAX_PAYLOAD];
  size_t len;
};
static void rec_add(struct recs *r, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rec_add(struct recs *r, const char *key, const char *fmt, ...) {
  char val[4400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(val, sizeof val, fmt, ap);
  va_end(ap);
  size_t need = strlen(key) + 1 + strlen(val) + 1;
  if (r->len + need > sizeof r->buf) return;
  r->len += (size_t)sprintf(r->buf + r->len, "%s=%s", key, val) + 1;
}

static void send_recs(int type, uint32_t ch, struct recs *r) { send_frame(type, 0, ch, r->buf, r->len); }

static const char *errno_name(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EISDIR: return "EISDIR";
    case ENOTDIR: return "ENOTDIR";
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EROFS: return "EROFS";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ECANCELED: return "ECANCELED";
    case EBUSY: return "EBUSY";
    case E2BIG: return "E2BIG";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case EIO: return "EIO";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EAGAIN: return "EAGAIN";
    case ESRCH: return "ESRCH";
    case ENOTTY: return "ENOTTY";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case EXDEV: return "EXDEV";
    case ETXTBSY: return "ETXTBSY";
    case EFBIG: return "EFBIG";
    case ENOTEMPTY: return "ENOTEMPTY";
  }
  return "EIO";
}

static void send_error(uint32_t ch, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void send_error(uint32_t ch, int err, const char *fmt, ...) {
  char msg[4200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct recs r = { .len = 0 };
  rec_add(&r, "errno", "%s", errno_name(err));
  rec_add(&r, "message", "%s", msg);
  send_recs(T_ERROR, ch, &r);
}

static void send_credit(uint32_t ch, int stream, size_t bytes) {
  struct recs r = { .len = 0 };
  rec_add(&r, "bytes", "%zu", bytes);
  send_frame(T_CREDIT, stream, ch, r.buf, r.len);
}

/* ---- channels ------------------------------------------------------------------ */

static int attached_count(void) {
  int n = 0;
  for (int i = 0; i < nchans; i++) n += !chans[i]->detached;
  return n;
}

static struct chan *find_chan(uint32_t id) {
  for (int i = 0; i < nchans; i++)
    if (!chans[i]->detached && chans[i]->id == id) return chans[i];
  return NULL;
}

static struct chan *new_chan(uint32_t id, int kind) {
  if (nchans >= MAX_TRACKED) return NULL;
  struct chan *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->id = id;
  c->kind = kind;
  c->out_fd[0] = c->out_fd[1] = c->out_fd[2] = -1;
  c->in_fd = c->fd = c->dirfd = -1;
  chans[nchans++] = c;
  return c;
}

static void free_chan(struct chan *c) {
  for (int i = 0; i < nchans; i++) {
    if (chans[i] == c) {
      chans[i] = chans[--nchans];
      break;
    }
  }
  for (int s = 1; s <= 2; s++)
    if (c->out_fd[s] >= 0) close(c->out_fd[s]);
  if (c->in_fd >= 0) close(c->in_fd);
  if (c->fd >= 0) close(c->fd);
  if (c->dirfd >= 0) close(c->dirfd);
  free(c->in_buf);
  free(c);
}

static void discard_fd(int fd) {
  if (ndiscard < MAX_DISCARD) discard_fds[ndiscard++] = fd;
  else close(fd);
}

/* ---- cgroups ------------------------------------------------------------------- */

static void setup_cgroups(void) {
  if (cfg->test_mode) return;
  struct stat st;
  if (stat("/sys/fs/cgroup/cgroup.controllers", &st) < 0) {
    if (mount("none", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
      gc_log("cgroup2: %s (execs use process groups)", strerror(errno));
      return;
    }
  }
  if (mkdir("/sys/fs/cgroup/monocore", 0755) < 0 && errno != EEXIST) return;
  cgroups_ok = stat("/sys/fs/cgroup/monocore/cgroup.kill", &st) == 0;
}

static void cg_try_remove(const char *dir) {
  if (!dir[0]) return;
  if (rmdir(dir) == 0 || errno == ENOENT) return;
  if (ncg_gc < (int)(sizeof cg_gc / sizeof cg_gc[0])) cg_gc[ncg_gc++] = strdup(dir);
}

static void cg_collect(void) {
  for (int i = 0; i < ncg_gc;) {
    if (rmdir(cg_gc[i]) == 0 || errno == ENOENT) {
      free(cg_gc[i]);
      cg_gc[i] = cg_gc[--ncg_gc];
    } else {
      i++;
    }
  }
}

static void write_str(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  gc_write_all(fd, s, strlen(s));
  close(fd);
}

/* Signals every process of an exec: its cgroup when it has one, else its group. */
static void signal_tree(struct chan *c, int sig) {
  if (c->cg[0]) {
    char p[200];
    if (sig == SIGKILL) {
      snprintf(p, sizeof p, "%s/cgroup.kill", c->cg);
      write_str(p, "1");
    } else {
      snprintf(p, sizeof p, "%s/cgroup.procs", c->cg);
      FILE *f = fopen(p, "re");
      long pid;
      while (f && fscanf(f, "%ld", &pid) == 1) kill((pid_t)pid, sig);
      if (f) fclose(f);
    }
  }
  if (c->pid > 0) {
    kill(-c->pid, sig);
    if (!c->exited) kill(c->pid, sig);
  }
}

/* ---- sessions --------------------------------------------------------------------- */

/* Ends the current session: execs keep running detached (output discarded),
 * file transfers are aborted (temp files removed). */
static void end_session(void) {
  for (int i = 0; i < nchans;) {
    struct chan *c = chans[i];
    if (c->kind == CH_EXEC) {
      if (!c->detached) {
        c->detached = 1;
        c->old_id = c->id;
        c->id = 0;
        if (c->in_fd >= 0) close(c->in_fd);
        c->in_fd = -1;
        free(c->in_buf);
        c->in_buf = NULL;
        c->in_len = 0;
        for (int s = 1; s <= 2; s++) {
          if (c->out_fd[s] < 0) continue;
          if (c->is_pty) close(c->out_fd[s]);
          else discard_fd(c->out_fd[s]);
          c->out_fd[s] = -1;
        }
      }
      i++;
      continue;
    }
    if (c->kind == CH_FWRITE && c->dirfd >= 0 && c->tmp[0]) unlinkat(c->dirfd, c->tmp, 0);
    free_chan(c); /* the array shrank: same index again */
  }
  session_active = 0;
}

/* ---- processes ------------------------------------------------------------------- */

static void env_put(char **env, int *n, char *entry) {
  const char *eq = strchr(entry, '=');
  size_t klen = eq ? (size_t)(eq - entry) : strlen(entry);
  for (int i = 0; i < *n; i++) {
    if (strncmp(env[i], entry, klen) == 0 && env[i][klen] == '=') {
      env[i] = entry;
      return;
    }
  }
  env[(*n)++] = entry;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

struct exec_req {
  char *argv[4097];
  int argc;
  char *env[4097];
  int env_n;
  int env_clear;
  const char *cwd, *user;
  int want_stdin, pty, cols, rows, tool_busybox, kill_tree_on_exit;
  long long timeout_ms, window;
};

static void handle_exec(uint32_t ch, struct exec_req *q) {
  if (find_chan(ch)) { send_error(ch, EEXIST, "channel %u is in use", ch); return; }
  if (attached_count() >= MAX_CHANNELS) { send_error(ch, EBUSY, "too many channels (%d)", MAX_CHANNELS); return; }
  if (q->argc == 0) { send_error(ch, EINVAL, "exec: argv is empty"); return; }
  if (q->tool_busybox && cfg->busybox_fd < 0) { send_error(ch, EINVAL, "exec: tool=busybox: the agent has no busybox"); return; }
  struct chan *c = new_chan(ch, CH_EXEC);
  if (!c) { send_error(ch, EBUSY, "too many tracked processes"); return; }
  long long w = q->window > 0 ? q->window : DEFAULT_CREDIT;
  if (w > MAX_CREDIT) w = MAX_CREDIT;
  c->credit[1] = c->credit[2] = w;
  c->kill_tree_on_exit = q->kill_tree_on_exit;

  int in_r = -1, in_w = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1, master = -1;
  char slave_name[128] = "";
  int p[2];
  if (q->pty) {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, slave_name, sizeof slave_name) != 0) {
      int e = errno;
      if (master >= 0) close(master);
      free_chan(c);
      send_error(ch, e, "exec: pseudo-terminal: %s", strerror(e));
      return;
    }
    struct winsize ws = { .ws_row = (unsigned short)(q->rows > 0 ? q->rows : 24), .ws_col = (unsigned short)(q->cols > 0 ? q->cols : 80) };
    ioctl(master, TIOCSWINSZ, &ws);
  } else {
    if (q->want_stdin) {
      if (pipe2(p, O_CLOEXEC) < 0) goto pipe_fail;
      in_r = p[0];
      in_w = p[1];
    }
    if (pipe2(p, O_CLOEXEC) < 0) goto pipe_fail;
    out_r = p[0];
    out_w = p[1];
    if (pipe2(p, O_CLOEXEC) < 0) goto pipe_fail;
    err_r = p[0];
    err_w = p[1];
  }
  if (cgroups_ok) {
    snprintf(c->cg, sizeof c->cg, "/sys/fs/cgroup/monocore/exec-%lu", ++exec_seq);
    if (mkdir(c->cg, 0755) < 0) c->cg[0] = 0;
  }
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) < 0) goto pipe_fail;

  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(errpipe[0]);
    close(errpipe[1]);
    errno = e;
    goto pipe_fail;
  }
  if (pid == 0) {
    setsid();
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (q->pty) {
      int slave = open(slave_name, O_RDWR);
      if (slave >= 0) {
        ioctl(slave, TIOCSCTTY, 0);
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        if (slave > 2) close(slave);
      }
    } else {
      dup2(in_r >= 0 ? in_r : devnull, 0);
      dup2(out_w, 1);
      dup2(err_w, 2);
    }
    if (c->cg[0]) {
      char path[200];
      snprintf(path, sizeof path, "%s/cgroup.procs", c->cg);
      write_str(path, "0");
    }
    if (!cfg->test_mode) write_str("/proc/self/oom_score_adj", "0");
    for (int i = 0; i < cfg->rlimit_n; i++) {
      struct rlimit r = { cfg->rlimits[i].soft, cfg->rlimits[i].hard };
      setrlimit(cfg->rlimits[i].res, &r);
    }
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);

    static char *envp[8200];
    int en = 0;
    if (!q->env_clear)
      for (int i = 0; i < def_env_n; i++) env_put(envp, &en, def_env[i]);
    for (int i = 0; i < q->env_n; i++) env_put(envp, &en, q->env[i]);
    envp[en] = NULL;

    char msg[700];
    int code = 0;
    const char *cwd = q->cwd ? q->cwd : (cfg->workdir ? cfg->workdir : "/");
    if (chdir(cwd) < 0) {
      snprintf(msg, sizeof msg, "cwd %s: %s", cwd, strerror(errno));
      code = 125;
    } else {
      const char *user = q->user ? q->user : cfg->user;
      char uerr[600];
      const char *m = gc_switch_user(user, envp, &en, uerr, sizeof uerr);
      if (m) {
        snprintf(msg, sizeof msg, "%s", m);
        code = 125;
      } else {
        int e;
        if (q->tool_busybox) {
          syscall(SYS_execveat, cfg->busybox_fd, "", q->argv, envp, AT_EMPTY_PATH);
          e = errno;
        } else {
          e = gc_exec_path(q->argv, envp, en);
        }
        snprintf(msg, sizeof msg, "exec %s: %s", q->argv[0], strerror(e));
        code = e == ENOENT || e == ENOTDIR ? 127 : 126;
      }
    }
    dprintf(2, "monocore-agent: %s\n", msg);
    char rep[800];
    int n = snprintf(rep, sizeof rep, "%d %s", code, msg);
    gc_write_all(errpipe[1], rep, (size_t)n);
    _exit(code);
  }
  close(errpipe[1]);
  if (in_r >= 0) close(in_r);
  if (out_w >= 0) close(out_w);
  if (err_w >= 0) close(err_w);
  char rep[800];
  ssize_t n, got = 0;
  while ((n = read(errpipe[0], rep + got, sizeof rep - 1 - (size_t)got)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += n;
  }
  close(errpipe[0]);
  rep[got] = 0;
  if (got > 0) {
    char *sp = strchr(rep, ' ');
    snprintf(c->spawn_err, sizeof c->spawn_err, "%s", sp ? sp + 1 : rep);
  }
  c->pid = pid;
  if (q->pty) {
    c->is_pty = 1;
    set_nonblock(master);
    c->out_fd[1] = master;
    if (q->want_stdin) c->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
  } else {
    set_nonblock(out_r);
    set_nonblock(err_r);
    c->out_fd[1] = out_r;
    c->out_fd[2] = err_r;
    if (in_w >= 0) {
      set_nonblock(in_w);
      c->in_fd = in_w;
    }
  }
  if (c->in_fd >= 0) c->in_buf = malloc(WINDOW);
  if (q->timeout_ms > 0) c->deadline = now_ms() + q->timeout_ms;
  struct recs r = { .len = 0 };
  rec_add(&r, "pid", "%d", (int)pid);
  rec_add(&r, "window", "%d", c->in_fd >= 0 ? WINDOW : 0);
  send_recs(T_STARTED, ch, &r);
  return;

pipe_fail: {
    int e = errno;
    int fds[] = { in_r, in_w, out_r, out_w, err_r, err_w };
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
      if (fds[i] >= 0) close(fds[i]);
    if (c->cg[0]) rmdir(c->cg);
    free_chan(c);
    send_error(ch, e, "exec: %s", strerror(e));
  }
}

/* After the main process exited, an output fd is given up: a pty master is
 * closed (the terminal hangs up), a pipe goes to the discard list so that
 * background writers keep a reader (no SIGPIPE). */
static void hand_off(struct chan *c, int s) {
  if (c->is_pty) close(c->out_fd[s]);
  else discard_fd(c->out_fd[s]);
  c->out_fd[s] = -1;
}

/* Reads one frame's worth from an exec's output stream into the output queue,
 * within its credit; returns 1 if it made progress. */
static int pump_out(struct chan *c, int s) {
  int fd = c->out_fd[s];
  if (fd < 0 || c->detached) return 0;
  if (c->credit[s] <= 0 || outq_pending() >= OUTQ_SOFT) return 0;
  size_t want = c->credit[s] < MAX_PAYLOAD ? (size_t)c->credit[s] : MAX_PAYLOAD;
  if (c->exited) {
    /* What was in the pipe at exit is bounded; a background flood is not. */
    if (c->post_exit_budget[s] <= 0) {
      hand_off(c, s);
      return 1;
    }
    if (c->post_exit_budget[s] < (long long)want) want = (size_t)c->post_exit_budget[s];
  }
  outq_reserve(HDR + want);
  ssize_t n = read(fd, outq + out_len + HDR, want);
  if (n > 0) {
    fill_header(outq + out_len, T_DATA, s, c->id, (uint32_t)n, NULL);
    out_len += HDR + (size_t)n;
    c->credit[s] -= n;
    if (c->exited) c->post_exit_budget[s] -= n;
    return 1;
  }
  if (n < 0 && errno == EINTR) return 1;
  if (n < 0 && errno == EAGAIN) {
    if (!c->exited) return 0;
    /* Pipe data is in the pipe before exit(); a pty's line discipline may still be
     * flushing, so wait a little for it (or for EIO, the terminal closing). */
    if (c->is_pty && now_ms() < c->pty_drain_until) return 0;
    hand_off(c, s);
    return 1;
  }
  /* EOF, or EIO from a pty master whose terminal closed. */
  close(fd);
  c->out_fd[s] = -1;
  return 1;
}

static void exec_maybe_finish(struct chan *c) {
  if (!c->exited) return;
  if (c->kind != CH_EXEC) return;
  for (int s = 1; s <= 2; s++) {
    if (c->out_fd[s] < 0) continue;
    while (pump_out(c, s) && c->out_fd[s] >= 0) {}
    if (c->out_fd[s] >= 0) return;
  }
  if (c->detached) return; /* kept until a HELLO_ACK reports it */
  int st = c->status;
  struct recs r = { .len = 0 };
  int code, sig = 0;
  if (WIFSIGNALED(st)) {
    sig = WTERMSIG(st);
    code = 128 + sig;
  } else {
    code = WEXITSTATUS(st);
  }
  rec_add(&r, "code", "%d", code);
  if (sig) rec_add(&r, "signal", "%d", sig);
  rec_add(&r, "timed_out", "%d", c->timed_out);
  if (c->spawn_err[0]) rec_add(&r, "spawn_error", "%s", c->spawn_err);
  send_recs(T_EXIT, c->id, &r);
  cg_try_remove(c->cg);
  free_chan(c);
}

static void reap(void) {
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p <= 0) break;
    for (int i = 0; i < nchans; i++) {
      struct chan *c = chans[i];
      if (c->kind == CH_EXEC && c->pid == p && !c->exited) {
        c->exited = 1;
        c->status = st;
        c->post_exit_budget[1] = c->post_exit_budget[2] = POST_EXIT_BUDGET;
        c->pty_drain_until = now_ms() + PTY_DRAIN_MS;
        c->deadline = 0;
        if (c->kill_tree_on_exit) signal_tree(c, SIGKILL);
        if (c->in_fd >= 0) close(c->in_fd);
        c->in_fd = -1;
        break;
      }
    }
  }
  if (ncg_gc) cg_collect();
}

static void pump_in(struct chan *c) {
  if (c->in_fd < 0) return;
  while (c->in_len > 0) {
    ssize_t n = write(c->in_fd, c->in_buf, c->in_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) { /* EPIPE: the process closed its stdin; keep crediting the host, drop the bytes */
      c->in_broken = 1;
      c->in_unacked += c->in_len;
      c->in_len = 0;
      break;
    }
    memmove(c->in_buf, c->in_buf + n, c->in_len - (size_t)n);
    c->in_len -= (size_t)n;
    c->in_unacked += (size_t)n;
  }
  if (c->in_unacked >= WINDOW / 4 || (c->in_len == 0 && c->in_unacked > 0)) {
    send_credit(c->id, 0, c->in_unacked);
    c->in_unacked = 0;
  }
  if (c->in_len == 0 && c->in_eof && c->in_fd >= 0) {
    close(c->in_fd);
    c->in_fd = -1;
  }
}

/* ---- the bulk lane ------------------------------------------------------------------ */

/* Opens the lane, O_DIRECT so that no guest page cache ever holds a stale copy of a slot the
 * host rewrote (a file on tmpfs in host tests cannot do O_DIRECT and needs no such care). */
static void lane_open(void) {
  /* In a VM the lane is the disk whose serial is LANE_SERIAL (names follow probe order). */
  char dev[64];
  const char *path = cfg->lane_path ? cfg->lane_path : gc_blockdev_by_serial(LANE_SERIAL, dev, sizeof dev) == 0 ? dev : NULL;
  if (!path) return;
  int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd < 0 && errno == EINVAL) fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    gc_log("lane %s: %s (files move through the port)", path, strerror(errno));
    return;
  }
  unsigned long long size = 0;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, &size) < 0) size = 0;
  } else if (fstat(fd, &st) == 0) {
    size = (unsigned long long)st.st_size;
  }
  unsigned long long slots = size / LANE_SLOT_BYTES;
  if (slots > LANE_MAX_SLOTS) slots = LANE_MAX_SLOTS;
  if (slots == 0 || posix_memalign((void **)&lane_buf, 4096, LANE_SLOT_BYTES) != 0) {
    gc_log("lane %s: %llu bytes is no slot (files move through the port)", path, size);
    close(fd);
    return;
  }
  lane_fd = fd;
  lane_slots = (unsigned)slots;
}

/* O_DIRECT wants whole blocks: slot offsets are aligned, lengths are rounded up (the bytes past
 * `len` are whatever the slot held; the reader ignores them). */
static size_t lane_io_len(size_t len) { return (len + 4095) & ~(size_t)4095; }

static int lane_slot(const char *v) {
  if (!v || lane_fd < 0) return -1;
  char *end;
  unsigned long slot = strtoul(v, &end, 10);
  return *end || slot >= lane_slots ? -1 : (int)slot;
}

/* ---- files ------------------------------------------------------------------------- */

static int valid_path(uint32_t ch, const char *path) {
  if (!path || path[0] != '/') {
    send_error(ch, EINVAL, "path %s: must be absolute", path ? path : "(missing)");
    return 0;
  }
  if (strlen(path) >= 4096) {
    send_error(ch, ENAMETOOLONG, "path is too long");
    return 0;
  }
  return 1;
}

static void send_info(uint32_t ch, const struct stat *st) {
  struct recs r = { .len = 0 };
  const char *type = S_ISREG(st->st_mode) ? "file" : S_ISDIR(st->st_mode) ? "dir" : S_ISLNK(st->st_mode) ? "symlink" : "other";
  rec_add(&r, "type", "%s", type);
  rec_add(&r, "size", "%lld", (long long)st->st_size);
  rec_add(&r, "mode", "%o", (unsigned)(st->st_mode & 07777));
  rec_add(&r, "uid", "%u", (unsigned)st->st_uid);
  rec_add(&r, "gid", "%u", (unsigned)st->st_gid);
  rec_add(&r, "mtime_ms", "%lld", (long long)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000);
  send_recs(T_FILE_INFO, ch, &r);
}

static void handle_stat(uint32_t ch, const char *path) {
  if (!valid_path(ch, path)) return;
  struct stat st;
  if (stat(path, &st) < 0) {
    send_error(ch, errno, "%s: %s", path, strerror(errno));
    return;
  }
  send_info(ch, &st);
}

static void handle_file_read(uint32_t ch, const char *path, long long window, int lane) {
  if (find_chan(ch)) { send_error(ch, EEXIST, "channel %u is in use", ch); return; }
  if (attached_count() >= MAX_CHANNELS) { send_error(ch, EBUSY, "too many channels (%d)", MAX_CHANNELS); return; }
  if (!valid_path(ch, path)) return;
  int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    send_error(ch, errno, "%s: %s", path, strerror(errno));
    return;
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = errno;
    close(fd);
    send_error(ch, e, "%s: %s", path, strerror(e));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    close(fd);
    send_error(ch, e, "%s: %s", path, e == EISDIR ? "is a directory" : "not a regular file");
    return;
  }
  struct chan *c = new_chan(ch, CH_FREAD);
  if (!c) { close(fd); send_error(ch, EBUSY, "too many channels"); return; }
  c->fd = fd;
  c->fcredit = window > 0 ? (window > MAX_CREDIT ? MAX_CREDIT : window) : DEFAULT_CREDIT;
  c->lane = lane && lane_fd >= 0;
  if (c->lane) { /* read O_DIRECT too: disk → slot buffer → lane, no page cache copy (see file_write_lane) */
    int fl = fcntl(fd, F_GETFL);
    c->direct = fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0 ? 1 : -1;
  }
  send_info(ch, &st);
}

/* One slot of a lane read, when the host has granted one: file → slot, then LANE. */
static int pump_lane_read(struct chan *c) {
  if (c->ngranted == 0 || outq_pending() >= OUTQ_SOFT) return 0;
  size_t got = 0;
  while (got < LANE_SLOT_BYTES) {
    ssize_t n = read(c->fd, lane_buf + got, LANE_SLOT_BYTES - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL && c->direct == 1) { /* an unaligned offset (after a short read): go on buffered */
      int fl = fcntl(c->fd, F_GETFL);
      c->direct = -1;
      if (fl >= 0 && fcntl(c->fd, F_SETFL, fl & ~O_DIRECT) == 0) continue;
    }
    if (n < 0) {
      send_error(c->id, errno, "%s", strerror(errno));
      free_chan(c);
      return 1;
    }
    if (n == 0) break;
    got += (size_t)n;
    if (c->direct == 1 && got % 4096) break; /* O_DIRECT needs an aligned buffer for the next read */
  }
  if (got == 0) {
    send_frame(T_EOF, 1, c->id, NULL, 0);
    free_chan(c);
    return 1;
  }
  int slot = c->granted[0];
  memmove(c->granted, c->granted + 1, (size_t)--c->ngranted);
  size_t io = lane_io_len(got);
  if (pwrite(lane_fd, lane_buf, io, (off_t)slot * LANE_SLOT_BYTES) != (ssize_t)io) {
    send_error(c->id, EIO, "writing lane slot %d: %s", slot, strerror(errno));
    free_chan(c);
    return 1;
  }
  struct recs r = { .len = 0 };
  rec_add(&r, "slot", "%d", slot);
  rec_add(&r, "len", "%zu", got);
  send_frame(T_LANE, 1, c->id, r.buf, r.len);
  return 1;
}

/* One frame of a file read, when there is credit and room; 1 if it made progress. */
static int pump_file_read(struct chan *c) {
  if (c->fcredit <= 0 || outq_pending() >= OUTQ_SOFT) return 0;
  size_t want = c->fcredit < MAX_PAYLOAD ? (size_t)c->fcredit : MAX_PAYLOAD;
  outq_reserve(HDR + want);
  ssize_t n = read(c->fd, outq + out_len + HDR, want);
  if (n < 0 && errno == EINTR) return 1;
  if (n < 0) {
    send_error(c->id, errno, "%s", strerror(errno));
    free_chan(c);
    return 1;
  }
  if (n == 0) {
    send_frame(T_EOF, 1, c->id, NULL, 0);
    free_chan(c);
    return 1;
  }
  fill_header(outq + out_len, T_DATA, 1, c->id, (uint32_t)n, NULL);
  out_len += HDR + (size_t)n;
  c->fcredit -= n;
  return 1;
}

/* mkdir -p of path's parents that are missing; new ones get the owner. */
static int make_parents(char *path, int chown_new, uid_t uid, gid_t gid) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, 0755) == 0) {
      if (chown_new && chown(path, uid, gid) < 0) { *p = '/'; return -1; }
    } else if (errno != EEXIST) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return 0;
}

static void handle_file_write(uint32_t ch, const char *path, const char *mode_s, const char *owner, int parents) {
  if (find_chan(ch)) { send_error(ch, EEXIST, "channel %u is in use", ch); return; }
  if (attached_count() >= MAX_CHANNELS) { send_error(ch, EBUSY, "too many channels (%d)", MAX_CHANNELS); return; }
  if (!valid_path(ch, path)) return;
  size_t plen = strlen(path);
  if (path[plen - 1] == '/') { send_error(ch, EISDIR, "%s: names a directory", path); return; }
  unsigned long mode = 0644;
  if (mode_s) {
    char *end;
    mode = strtoul(mode_s, &end, 8);
    if (*end || mode > 07777) { send_error(ch, EINVAL, "mode %s: not an octal mode", mode_s); return; }
  }
  struct gc_user u;
  char uerr[600];
  if (owner && *owner && gc_resolve_user(owner, &u, uerr, sizeof uerr)) { send_error(ch, EINVAL, "owner: %s", uerr); return; }
  int have_owner = owner && *owner;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  const char *base = path + (slash - dir) + 1;
  if (strlen(base) > 200) { send_error(ch, ENAMETOOLONG, "%s: file name too long", path); return; }
  if (parents && make_parents(dir, have_owner, have_owner ? u.uid : 0, have_owner ? u.gid : 0) < 0) {
    send_error(ch, errno, "%s: creating parent directories: %s", path, strerror(errno));
    return;
  }
  *slash = 0;
  int dirfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) { send_error(ch, errno, "%s: %s", dir[0] ? dir : "/", strerror(errno)); return; }
  struct stat st;
  if (fstatat(dirfd, base, &st, 0) == 0 && S_ISDIR(st.st_mode)) {
    close(dirfd);
    send_error(ch, EISDIR, "%s: is a directory", path);
    return;
  }
  struct chan *c = new_chan(ch, CH_FWRITE);
  if (!c) { close(dirfd); send_error(ch, EBUSY, "too many channels"); return; }
  c->dirfd = dirfd;
  snprintf(c->base, sizeof c->base, "%s", base);
  snprintf(c->path, sizeof c->path, "%s", path);
  uint8_t rnd[6] = {0};
  int rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (rfd >= 0) { if (read(rfd, rnd, sizeof rnd) < 0) {} close(rfd); }
  snprintf(c->tmp, sizeof c->tmp, ".%s.mc-%02x%02x%02x%02x%02x%02x", base, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
  c->fd = openat(dirfd, c->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (c->fd < 0) {
    int e = errno;
    c->tmp[0] = 0;
    free_chan(c);
    send_error(ch, e, "%s: %s", path, strerror(e));
    return;
  }
  c->mode = (mode_t)mode;
  c->uid = have_owner ? u.uid : 0;
  c->gid = have_owner ? u.gid : 0;
  struct recs r = { .len = 0 };
  rec_add(&r, "window", "%d", WINDOW);
  send_recs(T_FILE_READY, ch, &r);
}

static void file_write_fail(struct chan *c, int e, const char *what) {
  unlinkat(c->dirfd, c->tmp, 0);
  send_error(c->id, e, "%s: %s: %s", c->path, what, strerror(e));
  free_chan(c);
}

static void file_write_data(struct chan *c, const uint8_t *p, size_t n) {
  if (gc_write_all(c->fd, p, n) < 0) {
    file_write_fail(c, errno, "write");
    return;
  }
  c->size += n;
  c->unacked += n;
  if (c->unacked >= WINDOW / 4) {
    send_credit(c->id, 0, c->unacked);
    c->unacked = 0;
  }
}

/* A slot of upload data: slot → file, then the slot goes back to the host. */
static void file_write_lane(struct chan *c, int slot, const char *len_s) {
  char *end;
  unsigned long len = len_s ? strtoul(len_s, &end, 10) : 0;
  if (slot < 0 || !len_s || *end || len == 0 || len > LANE_SLOT_BYTES) {
    file_write_fail(c, EINVAL, "lane frame");
    return;
  }
  size_t io = lane_io_len(len);
  if (pread(lane_fd, lane_buf, io, (off_t)slot * LANE_SLOT_BYTES) < (ssize_t)len) {
    file_write_fail(c, errno ? errno : EIO, "reading the lane");
    return;
  }
  struct recs r = { .len = 0 };
  rec_add(&r, "slot", "%d", slot);
  /* Whole blocks go to the file O_DIRECT: straight from the slot buffer to the disk, no page
   * to allocate and fill (a memcpy is slow under TCG). The first piece that is not whole
   * blocks, or a filesystem that refuses O_DIRECT (tmpfs, 9p), switches to buffered writes. */
  int fl = fcntl(c->fd, F_GETFL);
  int aligned = len % 4096 == 0 && c->size % 4096 == 0;
  if (c->direct == 0) c->direct = aligned && fl >= 0 && fcntl(c->fd, F_SETFL, fl | O_DIRECT) == 0 ? 1 : -1;
  else if (c->direct == 1 && !aligned) {
    c->direct = -1;
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl & ~O_DIRECT) < 0) {
      send_frame(T_LANE_FREE, 0, c->id, r.buf, r.len);
      file_write_fail(c, errno, "fcntl");
      return;
    }
  }
  if (gc_write_all(c->fd, lane_buf, len) < 0) {
    int e = errno;
    send_frame(T_LANE_FREE, 0, c->id, r.buf, r.len);
    file_write_fail(c, e, "write");
    return;
  }
  c->size += len;
  send_frame(T_LANE_FREE, 0, c->id, r.buf, r.len);
}

static void file_write_end(struct chan *c) {
  /* chown before chmod: chown clears setuid/setgid bits. */
  if (fchown(c->fd, c->uid, c->gid) < 0) { file_write_fail(c, errno, "chown"); return; }
  if (fchmod(c->fd, c->mode) < 0) { file_write_fail(c, errno, "chmod"); return; }
  if (renameat(c->dirfd, c->tmp, c->dirfd, c->base) < 0) { file_write_fail(c, errno, "rename"); return; }
  struct recs r = { .len = 0 };
  rec_add(&r, "size", "%llu", c->size);
  send_recs(T_FILE_DONE, c->id, &r);
  free_chan(c);
}

/* ---- refresh (a new identity after a restore) ------------------------------------ */

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

struct refresh_req {
  const char *time_ns, *entropy, *hostname, *workdir, *user;
  char *env[4096];
  int env_n, env_set;
  char *nics[16];
  int nic_n;
  char *hosts[1024];
  int hosts_n, hosts_set;
  char *dns[8];
  int dns_n;
};

static int run_ip(char *const *argv) { return cfg->busybox_fd >= 0 ? gc_busybox(cfg->busybox_fd, argv) : -1; }

static void handle_refresh(uint32_t ch, struct refresh_req *q) {
  if (cfg->test_mode) {
    send_error(ch, EPERM, "refresh is disabled when the agent runs as a host process (test mode)");
    return;
  }
  long long step_ms = 0;
  if (q->time_ns) {
    char *end;
    unsigned long long ns = strtoull(q->time_ns, &end, 10);
    if (*end) { send_error(ch, EINVAL, "time_ns %s: not a number", q->time_ns); return; }
    struct timespec before, ts = { .tv_sec = (time_t)(ns / 1000000000ULL), .tv_nsec = (long)(ns % 1000000000ULL) };
    clock_gettime(CLOCK_REALTIME, &before);
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) { send_error(ch, errno, "clock_settime: %s", strerror(errno)); return; }
    step_ms = ((long long)ts.tv_sec - before.tv_sec) * 1000 + (ts.tv_nsec - before.tv_nsec) / 1000000;
  }
  int bits = 0;
  if (q->entropy) {
    size_t hl = strlen(q->entropy);
    if (hl % 2 || hl / 2 > 512) { send_error(ch, EINVAL, "entropy: want at most 512 bytes of hex"); return; }
    struct { struct rand_pool_info info; uint8_t data[512]; } pool;
    for (size_t i = 0; i < hl / 2; i++) {
      int hi = hexval(q->entropy[2 * i]), lo = hexval(q->entropy[2 * i + 1]);
      if (hi < 0 || lo < 0) { send_error(ch, EINVAL, "entropy: not hex"); return; }
      pool.data[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(pool.info.buf, pool.data, hl / 2);
    pool.info.buf_size = (int)(hl / 2);
    pool.info.entropy_count = (int)(hl / 2 * 8);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    /* RNDADDENTROPY mixes the bytes in and credits them; RNDRESEEDCRNG makes the
     * CRNG use them now, so siblings of one snapshot diverge at once. */
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, &pool) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0) {
      int e = errno;
      if (fd >= 0) close(fd);
      send_error(ch, e, "reseeding the random pool: %s", strerror(e));
      return;
    }
    close(fd);
    bits = pool.info.entropy_count;
  }
  if (q->hostname) {
    if (sethostname(q->hostname, strlen(q->hostname)) < 0) { send_error(ch, errno, "sethostname: %s", strerror(errno)); return; }
    free(cur_hostname);
    cur_hostname = strdup(q->hostname);
  }
  if (q->hosts_set) {
    char **h = calloc((size_t)q->hosts_n + 1, sizeof *h);
    for (int i = 0; h && i < q->hosts_n; i++) h[i] = strdup(q->hosts[i]);
    if (h) {
      cfg->hosts = h; /* the previous list is leaked on purpose: it may be the spec's memory */
      cfg->hosts_n = q->hosts_n;
    }
  }
  if (q->hostname || q->hosts_set || q->dns_n)
    gc_write_identity("", cur_hostname ? cur_hostname : "monocore", cfg->hosts, cfg->hosts_n, q->dns, q->dns_n);
  /* Defaults of later execs, like env: a VM restored from a template booted with neutral ones. */
  if (q->workdir) {
    if (q->workdir[0] != '/') { send_error(ch, EINVAL, "workdir %s: not absolute", q->workdir); return; }
    cfg->workdir = strdup(q->workdir); /* the previous one is leaked on purpose: it may be the spec's memory */
  }
  if (q->user) cfg->user = q->user[0] ? strdup(q->user) : NULL;
  if (q->env_set) {
    char **e = calloc((size_t)q->env_n + 1, sizeof *e);
    if (!e) { send_error(ch, ENOMEM, "env"); return; }
    for (int i = 0; i < q->env_n; i++) e[i] = strdup(q->env[i]);
    def_env = e;
    def_env_n = q->env_n;
  }
  for (int i = 0; i < q->nic_n; i++) {
    char mac[32], newmac[32], cidr[64], gw[64], ifname[64];
    if (sscanf(q->nics[i], "%31s %31s %63s %63s", mac, newmac, cidr, gw) != 4) { send_error(ch, EINVAL, "nic %s: want \"<mac> <new mac|-> <cidr> <gateway|->\"", q->nics[i]); return; }
    if (gc_iface_by_mac(mac, ifname, sizeof ifname) < 0) { send_error(ch, ENOENT, "nic: no interface with MAC %s", mac); return; }
    int bad = 0;
    if (strcmp(newmac, "-") != 0) {
      char *a1[] = { "busybox", "ip", "link", "set", "dev", ifname, "down", NULL };
      char *a2[] = { "busybox", "ip", "link", "set", "dev", ifname, "address", newmac, NULL };
      bad |= run_ip(a1) != 0 || run_ip(a2) != 0;
    }
    char *a3[] = { "busybox", "ip", "addr", "flush", "dev", ifname, NULL };
    char *a4[] = { "busybox", "ip", "addr", "add", cidr, "dev", ifname, NULL };
    char *a5[] = { "busybox", "ip", "link", "set", "dev", ifname, "up", NULL };
    bad |= run_ip(a3) != 0 || run_ip(a4) != 0 || run_ip(a5) != 0;
    if (!bad && strcmp(gw, "-") != 0) {
      char *a6[] = { "busybox", "ip", "route", "replace", "default", "via", gw, "dev", ifname, NULL };
      bad |= run_ip(a6) != 0;
    }
    if (bad) { send_error(ch, EIO, "nic %s (%s): an ip command failed", mac, ifname); return; }
  }
  struct recs r = { .len = 0 };
  rec_add(&r, "entropy_bits", "%d", bits);
  rec_add(&r, "clock_step_ms", "%lld", step_ms);
  send_recs(T_REFRESHED, ch, &r);
}

/* ---- frames from the host ------------------------------------------------------------ */

static void handle_hello(char **keys, char **vals, int n) {
  unsigned long vmin = 0, vmax = 0;
  const char *nonce = "";
  for (int i = 0; i < n; i++) {
    if (!strcmp(keys[i], "min")) vmin = strtoul(vals[i], NULL, 10);
    else if (!strcmp(keys[i], "max")) vmax = strtoul(vals[i], NULL, 10);
    else if (!strcmp(keys[i], "nonce")) nonce = vals[i];
  }
  end_session();
  if (vmin > PROTOCOL_VERSION || vmax < PROTOCOL_VERSION) {
    struct recs r = { .len = 0 };
    rec_add(&r, "errno", "EPROTONOSUPPORT");
    rec_add(&r, "message", "the agent speaks protocol %d, the host %lu..%lu", PROTOCOL_VERSION, vmin, vmax);
    rec_add(&r, "nonce", "%s", nonce); /* so the host knows this answers its HELLO */
    send_recs(T_ERROR, 0, &r);
    return;
  }
  session_active = 1;
  sessions++;
  char boot_id[64] = "";
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t r = read(fd, boot_id, sizeof boot_id - 1);
    boot_id[r > 0 ? r : 0] = 0;
    boot_id[strcspn(boot_id, "\n")] = 0;
    close(fd);
  }
  struct recs r = { .len = 0 };
  rec_add(&r, "version", "%d", PROTOCOL_VERSION);
  rec_add(&r, "nonce", "%s", nonce);
  rec_add(&r, "agent", "%s", AGENT_BUILD);
  rec_add(&r, "boot_id", "%s", boot_id);
  rec_add(&r, "uptime", "%.3f", gc_uptime());
  rec_add(&r, "sessions", "%u", sessions);
  rec_add(&r, "pid", "%d", (int)getpid());
  rec_add(&r, "cgroup", "%d", cgroups_ok);
  if (lane_fd >= 0) rec_add(&r, "lane", "%u %d", lane_slots, LANE_SLOT_BYTES);
  for (int i = 0; i < nchans;) {
    struct chan *c = chans[i];
    if (c->kind != CH_EXEC || !c->detached) { i++; continue; }
    if (c->exited) {
      int st = c->status;
      rec_add(&r, "detached", "%u %d %d", c->old_id, (int)c->pid, WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st));
      if (c->out_fd[1] < 0 && c->out_fd[2] < 0) {
        cg_try_remove(c->cg);
        free_chan(c);
        continue;
      }
    } else {
      rec_add(&r, "detached", "%u %d running", c->old_id, (int)c->pid);
    }
    i++;
  }
  send_recs(T_HELLO_ACK, 0, &r);
}

#define MAX_RECS 8300

static void handle_frame(int type, int stream, uint32_t ch, uint8_t *payload, uint32_t len) {
  static char *keys[MAX_RECS], *vals[MAX_RECS];
  int n = 0;
  if (type != T_DATA && type != T_PING) {
    if (len && payload[len - 1] != 0) return; /* records must end with NUL: ignore */
    for (uint32_t off = 0; off < len && n < MAX_RECS;) {
      char *rec = (char *)payload + off;
      size_t l = strlen(rec);
      off += (uint32_t)l + 1;
      char *eq = strchr(rec, '=');
      if (!eq) continue;
      *eq = 0;
      keys[n] = rec;
      vals[n++] = eq + 1;
    }
  }
  if (type == T_HELLO) {
    if (ch == 0) handle_hello(keys, vals, n);
    return;
  }
  if (!session_active) return;
  const char *v;
#define FIND(k) ({ const char *_r = NULL; for (int _i = 0; _i < n; _i++) if (!strcmp(keys[_i], k)) _r = vals[_i]; _r; })
  switch (type) {
    case T_PING:
      if (len <= 64) send_frame(T_PONG, 0, 0, payload, len);
      return;
    case T_EXEC: {
      static struct exec_req q;
      memset(&q, 0, sizeof q);
      q.want_stdin = 0;
      for (int i = 0; i < n; i++) {
        if (!strcmp(keys[i], "arg")) { if (q.argc < 4096) q.argv[q.argc++] = vals[i]; }
        else if (!strcmp(keys[i], "env")) { if (q.env_n < 4096) q.env[q.env_n++] = vals[i]; }
        else if (!strcmp(keys[i], "env_clear")) q.env_clear = atoi(vals[i]);
        else if (!strcmp(keys[i], "cwd")) q.cwd = vals[i];
        else if (!strcmp(keys[i], "user")) q.user = vals[i];
        else if (!strcmp(keys[i], "stdin")) q.want_stdin = atoi(vals[i]);
        else if (!strcmp(keys[i], "pty")) q.pty = sscanf(vals[i], "%d %d", &q.cols, &q.rows) == 2;
        else if (!strcmp(keys[i], "timeout_ms")) q.timeout_ms = atoll(vals[i]);
        else if (!strcmp(keys[i], "kill_tree_on_exit")) q.kill_tree_on_exit = atoi(vals[i]);
        else if (!strcmp(keys[i], "tool")) q.tool_busybox = !strcmp(vals[i], "busybox");
        else if (!strcmp(keys[i], "window")) q.window = atoll(vals[i]);
      }
      q.argv[q.argc] = NULL;
      if (ch == 0) return;
      handle_exec(ch, &q);
      return;
    }
    case T_FILE_READ:
      if (ch) {
        const char *w = FIND("window"), *l = FIND("lane");
        handle_file_read(ch, FIND("path"), w ? atoll(w) : 0, l ? atoi(l) : 0);
      }
      return;
    case T_FILE_WRITE:
      if (ch) handle_file_write(ch, FIND("path"), FIND("mode"), FIND("owner"), (v = FIND("parents")) ? atoi(v) : 1);
      return;
    case T_STAT:
      if (ch) handle_stat(ch, FIND("path"));
      return;
    case T_REFRESH: {
      static struct refresh_req q;
      memset(&q, 0, sizeof q);
      for (int i = 0; i < n; i++) {
        if (!strcmp(keys[i], "time_ns")) q.time_ns = vals[i];
        else if (!strcmp(keys[i], "entropy")) q.entropy = vals[i];
        else if (!strcmp(keys[i], "hostname")) q.hostname = vals[i];
        else if (!strcmp(keys[i], "workdir")) q.workdir = vals[i];
        else if (!strcmp(keys[i], "user")) q.user = vals[i];
        else if (!strcmp(keys[i], "env")) { q.env_set = 1; if (q.env_n < 4096) q.env[q.env_n++] = vals[i]; }
        else if (!strcmp(keys[i], "env_clear")) q.env_set = 1;
        else if (!strcmp(keys[i], "nic")) { if (q.nic_n < 16) q.nics[q.nic_n++] = vals[i]; }
        else if (!strcmp(keys[i], "host")) { q.hosts_set = 1; if (q.hosts_n < 1024) q.hosts[q.hosts_n++] = vals[i]; }
        else if (!strcmp(keys[i], "hosts_clear")) q.hosts_set = 1;
        else if (!strcmp(keys[i], "dns")) { if (q.dns_n < 8) q.dns[q.dns_n++] = vals[i]; }
      }
      if (ch) handle_refresh(ch, &q);
      return;
    }
    case T_SIGNAL: {
      int sig = (v = FIND("sig")) ? atoi(v) : 0;
      if (sig <= 0 || sig >= NSIG) { send_error(ch, EINVAL, "signal %s: not a signal number", v ? v : "(missing)"); return; }
      if (ch == 0) {
        long pid = (v = FIND("pid")) ? atol(v) : 0;
        if (pid <= 1) { send_error(0, EINVAL, "signal: pid %ld refused", pid); return; }
        if (kill((pid_t)pid, sig) < 0) send_error(0, errno, "kill %ld: %s", pid, strerror(errno));
        return;
      }
      struct chan *c = find_chan(ch);
      if (!c || c->kind != CH_EXEC || c->exited) return;
      const char *target = FIND("target");
      if (target && !strcmp(target, "tree")) signal_tree(c, sig);
      else if (target && !strcmp(target, "group")) kill(-c->pid, sig);
      else kill(c->pid, sig);
      return;
    }
    case T_RESIZE: {
      struct chan *c = find_chan(ch);
      if (!c || !c->is_pty || c->out_fd[1] < 0) return;
      const char *cs = FIND("cols"), *rs = FIND("rows");
      struct winsize ws = { .ws_row = (unsigned short)(rs ? atoi(rs) : 24), .ws_col = (unsigned short)(cs ? atoi(cs) : 80) };
      ioctl(c->out_fd[1], TIOCSWINSZ, &ws);
      return;
    }
    case T_CREDIT: {
      struct chan *c = find_chan(ch);
      long long b = (v = FIND("bytes")) ? atoll(v) : 0;
      if (!c || b <= 0) return;
      if (c->kind == CH_EXEC && (stream == 1 || stream == 2)) {
        c->credit[stream] += b;
        if (c->credit[stream] > MAX_CREDIT) c->credit[stream] = MAX_CREDIT;
      } else if (c->kind == CH_FREAD && stream == 1) {
        c->fcredit += b;
        if (c->fcredit > MAX_CREDIT) c->fcredit = MAX_CREDIT;
      }
      return;
    }
    case T_DATA: {
      struct chan *c = find_chan(ch);
      if (!c || stream != 0) return;
      if (c->kind == CH_FWRITE) {
        file_write_data(c, payload, len);
      } else if (c->kind == CH_EXEC) {
        if (c->in_fd < 0 || c->in_broken || c->in_eof) { /* nobody reads it: credit it back */
          c->in_unacked += len;
          pump_in(c);
          return;
        }
        if (c->in_len + len > WINDOW) { gc_log("channel %u: stdin beyond its window; dropped", ch); return; }
        memcpy(c->in_buf + c->in_len, payload, len);
        c->in_len += len;
        pump_in(c);
      }
      return;
    }
    case T_LANE: {
      struct chan *c = find_chan(ch);
      if (!c || c->kind != CH_FWRITE || stream != 0) return;
      file_write_lane(c, lane_slot(FIND("slot")), FIND("len"));
      return;
    }
    case T_LANE_FREE: {
      struct chan *c = find_chan(ch);
      int slot = lane_slot(FIND("slot"));
      if (!c || c->kind != CH_FREAD || !c->lane || slot < 0 || c->ngranted >= (int)lane_slots) return;
      c->granted[c->ngranted++] = (uint8_t)slot;
      return;
    }
    case T_EOF: {
      struct chan *c = find_chan(ch);
      if (!c || stream != 0) return;
      if (c->kind == CH_FWRITE) {
        file_write_end(c);
      } else if (c->kind == CH_EXEC) {
        c->in_eof = 1;
        pump_in(c);
      }
      return;
    }
    case T_CANCEL: {
      struct chan *c = find_chan(ch);
      if (!c) return;
      if (c->kind == CH_EXEC) {
        if (!c->exited) {
          c->timed_out = 1;
          signal_tree(c, SIGKILL);
        }
      } else {
        if (c->kind == CH_FWRITE) unlinkat(c->dirfd, c->tmp, 0);
        send_error(ch, ECANCELED, "cancelled");
        free_chan(c);
      }
      return;
    }
  }
#undef FIND
}

/* Parses what is buffered; a frame that does not check out is skipped one byte
 * at a time (resynchronisation, docs/AGENT.md "Sessions"). */
static void parse_input(void) {
  for (;;) {
    size_t avail = in_end - in_start;
    if (avail < 4) break;
    uint8_t *p = inbuf + in_start;
    if (rd32(p) != MAGIC) {
      uint8_t *m = memchr(p + 1, 'M', avail - 1);
      in_start = m ? (size_t)(m - inbuf) : in_end;
      continue;
    }
    if (avail < HDR) break;
    int type = p[4], stream = p[5];
    uint32_t flags = (uint32_t)p[6] | (uint32_t)p[7] << 8, ch = rd32(p + 8), len = rd32(p + 12);
    if (!known_type(type) || flags != 0 || len > MAX_PAYLOAD || stream > 2) {
      in_start++;
      continue;
    }
    uint32_t hcrc = crc32_update(0, p, 16);
    if (type == T_DATA && hcrc != rd32(p + 16)) {
      in_start++;
      continue;
    }
    if (avail < HDR + len) break;
    if (type != T_DATA && crc32_update(hcrc, p + HDR, len) != rd32(p + 16)) {
      in_start++;
      continue;
    }
    in_start += HDR + len;
    handle_frame(type, stream, ch, p + HDR, len);
  }
  if (in_start == in_end) in_start = in_end = 0;
}

/* ---- transport ---------------------------------------------------------------------------- */

static int connect_socket(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  set_nonblock(fd);
  return fd;
}

/* The host went away: the session ends, nothing queued for it matters any more. */
static void host_gone(void) {
  if (session_active) end_session();
  out_off = out_len = 0;
  in_start = in_end = 0;
}

static void flush_out(void) {
  while (outq_pending() > 0) {
    ssize_t n = write(port_fd, outq + out_off, outq_pending());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out_off += (size_t)n;
  }
  if (out_off == out_len) out_off = out_len = 0;
}

int agent_run(struct agent_config *c) {
  cfg = c;
  crc_init();
  def_env = cfg->env;
  def_env_n = cfg->env_n;
  cur_hostname = cfg->hostname ? strdup(cfg->hostname) : NULL;
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGIO);
  sigprocmask(SIG_SETMASK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (cfg->test_mode) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* On the host nobody may reap what an exec leaves behind: we do (in a VM, init does). */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
  } else {
    write_str("/proc/self/oom_score_adj", "-1000"); /* the guest's OOM killer must not take the agent */
  }
  lane_open(); /* before the chroot: the lane is in init's /dev, not the guest's */
  if (cfg->root) {
    if (chroot(cfg->root) < 0 || chdir("/") < 0) {
      gc_log("chroot %s: %s", cfg->root, strerror(errno));
      return 1;
    }
  }
  setup_cgroups();
  if (cfg->connect_path) {
    port_fd = connect_socket(cfg->connect_path);
    if (port_fd < 0) {
      gc_log("connect %s: %s", cfg->connect_path, strerror(errno));
      return 1;
    }
  } else {
    port_fd = cfg->port_fd;
    set_nonblock(port_fd);
    /* SIGIO tells us when the host end (re)connects (virtio-serial port open events). */
    fcntl(port_fd, F_SETOWN, getpid());
    fcntl(port_fd, F_SETFL, fcntl(port_fd, F_GETFL) | O_ASYNC);
  }
  gc_log("serving (build %s, cgroups %d, lane slots %u)", AGENT_BUILD, cgroups_ok, lane_slots);

  static struct pollfd pfds[2 + MAX_TRACKED * 3 + MAX_DISCARD];
  static struct chan *pchan[2 + MAX_TRACKED * 3 + MAX_DISCARD];
  static int prole[2 + MAX_TRACKED * 3 + MAX_DISCARD];
  long long reconnect_until = 0;
  for (;;) {
    int np = 0, timeout = -1;
    long long now = now_ms();
    pfds[np] = (struct pollfd){ sfd, POLLIN, 0 };
    pchan[np] = NULL;
    prole[np++] = -1;
    int port_idx = -1;
    if (port_fd >= 0 && !port_down) {
      port_idx = np;
      pfds[np] = (struct pollfd){ port_fd, (short)(POLLIN | (outq_pending() ? POLLOUT : 0)), 0 };
      pchan[np] = NULL;
      prole[np++] = -2;
    } else {
      timeout = 100; /* look again whether the host is back */
    }
    for (int i = 0; i < nchans; i++) {
      struct chan *c = chans[i];
      if (c->kind == CH_EXEC) {
        for (int s = 1; s <= 2; s++) {
          if (c->out_fd[s] < 0) continue;
          int can = c->detached || (c->credit[s] > 0 && outq_pending() < OUTQ_SOFT);
          if (can) {
            pfds[np] = (struct pollfd){ c->out_fd[s], POLLIN, 0 };
            pchan[np] = c;
            prole[np++] = s;
          }
        }
        if (c->in_fd >= 0 && c->in_len > 0) {
          pfds[np] = (struct pollfd){ c->in_fd, POLLOUT, 0 };
          pchan[np] = c;
          prole[np++] = 0;
        }
        if (c->deadline) {
          long long t = c->deadline - now;
          if (t < 0) t = 0;
          if (timeout < 0 || t < timeout) timeout = (int)t;
        }
        if (c->exited && c->is_pty) {
          long long t = c->pty_drain_until - now;
          if (t < 0) t = 0;
          if (timeout < 0 || t < timeout) timeout = (int)t;
        }
      } else if (c->kind == CH_FREAD && (c->lane ? c->ngranted > 0 : c->fcredit > 0) && outq_pending() < OUTQ_SOFT) {
        timeout = 0;
      }
    }
    for (int i = 0; i < ndiscard; i++) {
      pfds[np] = (struct pollfd){ discard_fds[i], POLLIN, 0 };
      pchan[np] = NULL;
      prole[np++] = 100 + i;
    }
    if (ncg_gc && (timeout < 0 || timeout > 1000)) timeout = 1000;

    int r = poll(pfds, (nfds_t)np, timeout);
    if (r < 0 && errno != EINTR) {
      gc_log("poll: %s", strerror(errno));
      return 1;
    }
    now = now_ms();
    /* signals */
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == sizeof si) {}
    reap();

    /* port */
    if (port_idx >= 0 && r > 0) {
      short ev = pfds[port_idx].revents;
      if (ev & (POLLIN | POLLHUP | POLLERR)) {
        for (int rounds = 0; rounds < 4; rounds++) {
          if (in_end == sizeof inbuf) {
            memmove(inbuf, inbuf + in_start, in_end - in_start);
            in_end -= in_start;
            in_start = 0;
          }
          ssize_t n = read(port_fd, inbuf + in_end, sizeof inbuf - in_end);
          if (n > 0) {
            in_end += (size_t)n;
            parse_input();
            continue;
          }
          if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
          /* EOF (or an error): the host end is gone. */
          host_gone();
          if (cfg->connect_path) {
            close(port_fd);
            port_fd = -1;
            reconnect_until = now + 3000;
          } else {
            port_down = 1;
          }
          break;
        }
        if (port_fd >= 0 && !port_down && (ev & POLLHUP) && !cfg->connect_path) {
          host_gone();
          port_down = 1;
        }
      }
      if (port_fd >= 0 && !port_down && (pfds[port_idx].revents & POLLOUT)) flush_out();
    }
    if (port_fd >= 0 && !port_down && outq_pending()) flush_out();
    if (port_down) {
      struct pollfd t = { port_fd, POLLIN, 0 };
      if (poll(&t, 1, 0) >= 0 && !(t.revents & POLLHUP)) port_down = 0;
    }
    if (port_fd < 0 && cfg->connect_path) {
      port_fd = connect_socket(cfg->connect_path);
      if (port_fd < 0 && now >= reconnect_until) {
        for (int i = 0; i < nchans; i++)
          if (chans[i]->kind == CH_EXEC && chans[i]->pid > 0 && !chans[i]->exited) signal_tree(chans[i], SIGKILL);
        return 0;
      }
    }

    /* channels */
    for (int i = 0; i < np; i++) {
      if (!pfds[i].revents || prole[i] < 0 || prole[i] >= 100) continue;
      struct chan *c = pchan[i];
      int still = 0;
      for (int k = 0; k < nchans; k++) still |= chans[k] == c;
      if (!still) continue;
      if (prole[i] == 0) pump_in(c);
      else pump_out(c, prole[i]);
    }
    for (int i = np - 1; i >= 0; i--) {
      if (prole[i] < 100 || !pfds[i].revents) continue;
      int idx = prole[i] - 100;
      static uint8_t sink[65536];
      ssize_t n = read(discard_fds[idx], sink, sizeof sink);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close(discard_fds[idx]);
        discard_fds[idx] = discard_fds[--ndiscard];
      }
    }
    for (int i = 0; i < nchans;) {
      struct chan *c = chans[i];
      int before = nchans;
      if (c->kind == CH_EXEC) {
        if (c->deadline && now >= c->deadline && !c->exited) {
          c->timed_out = 1;
          c->deadline = 0;
          signal_tree(c, SIGKILL);
        }
        exec_maybe_finish(c);
      } else if (c->kind == CH_FREAD) {
        if (c->lane) pump_lane_read(c);
        else pump_file_read(c);
      }
      if (nchans == before && chans[i] == c) i++;
    }
    if (port_fd >= 0 && !port_down && outq_pending()) flush_out();
  }
}

/* ---- `init agent --connect SOCKET [...]` ---------------------------------------------------- */

int agent_cli(int argc, char **argv) {
  static struct agent_config c;
  static char *env[4097];
  static struct gc_rlimit none[1];
  memset(&c, 0, sizeof c);
  c.port_fd = -1;
  c.busybox_fd = -1;
  c.env = env;
  c.rlimits = none;
  c.test_mode = 1;
  c.workdir = "/";
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--connect") && v) { c.connect_path = v; i++; }
    else if (!strcmp(a, "--busybox") && v) { c.busybox_fd = open(v, O_PATH | O_CLOEXEC); i++; }
    else if (!strcmp(a, "--env") && v) { if (c.env_n < 4096) env[c.env_n++] = (char *)v; i++; }
    else if (!strcmp(a, "--workdir") && v) { c.workdir = v; i++; }
    else if (!strcmp(a, "--user") && v) { c.user = v; i++; }
    else if (!strcmp(a, "--lane") && v) { c.lane_path = v; i++; }
    else {
      fprintf(stderr, "usage: %s agent --connect SOCKET [--busybox PATH] [--env K=V]... [--workdir DIR] [--user USER] [--lane FILE]\n", argv[0]);
      return 2;
    }
  }
  if (!c.connect_path) {
    fprintf(stderr, "%s agent: --connect SOCKET is required\n", argv[0]);
    return 2;
  }
  gc_log_to_stderr = 1;
  gc_log_name = "monocore-agent";
  return agent_run(&c);
}

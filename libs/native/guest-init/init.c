/*
 * monocore guest init — PID 1 inside every qemu-backend microVM.
 *
 * Why C and not a busybox sh script: the command's argv and env must reach
 * execve() byte-for-byte (spaces, quotes, newlines, empty strings, unicode),
 * PID 1 must reap zombies and forward signals, and the exit status of the
 * command (including 128+N for a signal, 126/127 for exec failures) must be
 * reported exactly. A shell would re-parse strings and hides the wait status.
 * Built statically (gcc -static) when the initramfs is built; no libc in the
 * initramfs is needed.
 *
 * Protocol (docs/VM.md "Guest init protocol"), over the virtio-serial port
 * named "monocore.control":
 *   host -> guest   "MCSPEC1 <len>\n" then <len> bytes of NUL-terminated
 *                   "key=value" records (see parse_spec below).
 *   guest -> host   "boot <uptime>\n"      init is running (uptime in s)
 *                   "started <uptime>\n"   the command was exec'd successfully
 *                   "error <message>\n"    setup failed before exec
 *                   "exit <code> <uptime>\n" the command ended with <code>
 *                   (a spec with "probe=1" only boots: init answers "exit 0")
 *   host -> guest   "signal <N>\n"         deliver signal N to the command
 *                   (the host's graceful stop sends "signal 15")
 * The command's stdout/stderr are the ports "monocore.stdout"/"monocore.stderr";
 * the kernel console and init diagnostics go to ttyS0 (the console log).
 *
 * With "agent=1" init also forks the guest agent (agent.c, docs/AGENT.md) on
 * the port "monocore.agent" once the guest is set up, and respawns it if it
 * dies. With "sandbox=1" there is no command: init reports "started" once the
 * agent runs and keeps the VM up until "signal 15" (then SIGTERM to all, 2 s,
 * SIGKILL, "exit 0", power off).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "guest-common.h"

#define MAX_ITEMS 4096

static int control_fd = -1;

#define uptime gc_uptime
#define logmsg gc_log
#define mkdir_p gc_mkdir_p

static void write_all(int fd, const char *buf, size_t len) { (void)gc_write_all(fd, buf, len); }

static void control(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  if (control_fd >= 0) write_all(control_fd, buf, (size_t)n);
}

/* "discard=1": the host deletes the writable layer when the VM ends (monocore run): no flush. */
static int discard_disk;

static void power_off(void) {
  if (!discard_disk) sync();
  reboot(RB_POWER_OFF);
  /* Fallback: with reboot=t and QEMU's -no-reboot a reboot ends the VM too. */
  reboot(RB_AUTOBOOT);
  for (;;) pause();
}

static void fail(const char *fmt, ...) {
  char buf[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  for (char *p = buf; *p; p++)
    if (*p == '\n') *p = ' ';
  logmsg("fatal: %s", buf);
  control("error %s\n", buf);
  power_off();
}

static void must_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir_p(dst, 0755);
  if (mount(src, dst, type, flags, data) < 0) fail("mount %s on %s (%s): %s", src, dst, type, strerror(errno));
}

/* Load the modules listed in /etc/monocore/modules, in that (dependency) order. */
static void load_modules(void) {
  FILE *f = fopen("/etc/monocore/modules", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (!line[0]) continue;
    int optional = line[0] == '?';
    const char *path = optional ? line + 1 : line;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open module %s: %s", path, strerror(errno));
    if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST) {
      if (!optional) fail("insmod %s: %s", path, strerror(errno));
      logmsg("optional module %s not loaded: %s", path, strerror(errno));
    }
    close(fd);
  }
  fclose(f);
}

static void wait_for_path(const char *path, int ms) {
  for (int i = 0; i < ms / 5; i++) {
    if (access(path, F_OK) == 0) return;
    usleep(5000);
  }
  fail("%s did not appear within %d ms", path, ms);
}

/* ---- spec ---------------------------------------------------------------- */

static char *spec_buf;
static char *argv_list[MAX_ITEMS + 1];
static int argc_n;
static char *env_list[MAX_ITEMS + 2]; /* + HOME added for the user + NULL */
static int env_n;
static const char *workdir = "/";
static const char *user_spec; /* OCI config.User; NULL or "" = root */
static const char *hostname = "monocore";
static int has_disk;
static const char *image_fstype; /* "erofs" or "ext4": the read-only image device (serial "image") */
static int probe_only;
static int sandbox_mode; /* no command: the VM serves the agent until stopped */
static int agent_enabled;
struct vol { char tag[64]; int ro; const char *path; };
static struct vol vols[64];
static int vol_n;
struct nic { char mac[32]; char cidr[64]; char gw[64]; };
static struct nic nics[8];
static int nic_n;
static char *hosts_lines[MAX_ITEMS];
static int hosts_n;
static char *dns_servers[8];
static int dns_n;
static char *caps[MAX_ITEMS]; /* "<hex value> <path>" */
static int caps_n;
static struct gc_rlimit rlims[32];
static int rlim_n;

static void read_exact(int fd, char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("control channel closed while reading a message (%zu of %zu bytes)", got, len);
    got += (size_t)n;
  }
}

/* The records that make up the command (the boot spec's and a `main` message's); 0 if `key` is not one. */
static int command_record(const char *key, char *val) {
  if (strcmp(key, "arg") == 0) {
    if (argc_n >= MAX_ITEMS) fail("too many arguments");
    argv_list[argc_n++] = val;
  } else if (strcmp(key, "env") == 0) {
    if (env_n >= MAX_ITEMS) fail("too many environment entries");
    env_list[env_n++] = val;
  } else if (strcmp(key, "workdir") == 0) {
    workdir = val;
  } else if (strcmp(key, "user") == 0) {
    user_spec = val;
  } else if (strcmp(key, "discard") == 0) {
    discard_disk = strcmp(val, "1") == 0;
  } else {
    return 0;
  }
  return 1;
}

static void read_spec(void) {
  char header[64];
  size_t i = 0;
  for (;;) {
    char c;
    ssize_t n = read(control_fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("control channel closed before the spec header");
    if (c == '\n') break;
    if (i + 1 >= sizeof header) fail("spec header too long");
    header[i++] = c;
  }
  header[i] = 0;
  unsigned long len;
  if (sscanf(header, "MCSPEC1 %lu", &len) != 1 || len > (64UL << 20)) fail("bad spec header \"%s\"", header);
  spec_buf = malloc(len + 1);
  if (!spec_buf) fail("out of memory for spec");
  read_exact(control_fd, spec_buf, len);
  spec_buf[len] = 0;

  for (char *p = spec_buf, *next; p < spec_buf + len; p = next) {
    next = p + strlen(p) + 1;
    char *eq = strchr(p, '=');
    if (!eq) fail("spec record without '='");
    *eq = 0;
    char *key = p, *val = eq + 1;
    if (command_record(key, val)) {
      /* arg, env, workdir, user */
    } else if (strcmp(key, "hostname") == 0) {
      hostname = val;
    } else if (strcmp(key, "probe") == 0) {
      probe_only = atoi(val);
    } else if (strcmp(key, "sandbox") == 0) {
      sandbox_mode = atoi(val);
    } else if (strcmp(key, "agent") == 0) {
      agent_enabled = atoi(val);
    } else if (strcmp(key, "disk") == 0) {
      has_disk = atoi(val);
    } else if (strcmp(key, "image") == 0) { /* filesystem type of the image's block device */
      if (strcmp(val, "erofs") != 0 && strcmp(val, "ext4") != 0) fail("bad image record \"%s\"", val);
      image_fstype = val;
    } else if (strcmp(key, "vol") == 0) { /* "<tag> <ro|rw> <guest path>" */
      if (vol_n >= 64) fail("too many volumes");
      struct vol *v = &vols[vol_n++];
      char mode[8];
      int off = 0;
      if (sscanf(val, "%63s %7s %n", v->tag, mode, &off) < 2 || off == 0) fail("bad vol record");
      v->ro = strcmp(mode, "ro") == 0;
      v->path = val + off;
    } else if (strcmp(key, "nic") == 0) { /* "<mac> <cidr> <gateway|->" */
      if (nic_n >= 8) fail("too many nics");
      struct nic *n = &nics[nic_n++];
      if (sscanf(val, "%31s %63s %63s", n->mac, n->cidr, n->gw) != 3) fail("bad nic record");
    } else if (strcmp(key, "cap") == 0) { /* "<hex security.capability> <path>" */
      if (caps_n >= MAX_ITEMS) fail("too many file capabilities");
      caps[caps_n++] = val;
    } else if (strcmp(key, "dns") == 0) { /* a resolver for /etc/resolv.conf (outbound access only) */
      if (dns_n >= 8) fail("too many dns servers");
      dns_servers[dns_n++] = val;
    } else if (strcmp(key, "host") == 0) { /* "<ip> <name>" line for /etc/hosts */
      if (hosts_n >= MAX_ITEMS) fail("too many hosts");
      hosts_lines[hosts_n++] = val;
    } else if (strcmp(key, "rlimit") == 0) { /* "<resource number> <soft> <hard>" (-1 = unlimited) */
      if (rlim_n >= 32) fail("too many rlimits");
      long long s, h;
      int r;
      if (sscanf(val, "%d %lld %lld", &r, &s, &h) != 3) fail("bad rlimit record");
      rlims[rlim_n].res = r;
      rlims[rlim_n].soft = s < 0 ? RLIM_INFINITY : (rlim_t)s;
      rlims[rlim_n].hard = h < 0 ? RLIM_INFINITY : (rlim_t)h;
      rlim_n++;
    } else {
      logmsg("ignoring unknown spec key %s", key);
    }
  }
  if (argc_n == 0 && !probe_only && !sandbox_mode) fail("spec has no command");
  if (argc_n > 0 && sandbox_mode) fail("spec has both a command and sandbox=1");
  if (!image_fstype && !probe_only) fail("spec has no image record");
  if (sandbox_mode) agent_enabled = 1;
  argv_list[argc_n] = NULL;
  env_list[env_n] = NULL;
}

/* A VM restored from (or saved as) a template booted in sandbox mode: the host sends its
 * command as `main <length>\n` + arg/env/workdir/user records once REFRESH gave the guest its
 * identity (docs/SNAPSHOTS.md "Commands from templates"). `have` bytes of the body already
 * sit in `pre` (read with the line); the rest is read here. With `apply` 0 (a VM that already
 * runs its command) the body is read and dropped. Returns 0 for a bad or dropped message. */
static int read_main(unsigned long len, const char *pre, size_t have, int apply) {
  if (len == 0 || len > (16UL << 20)) return 0;
  char *buf = malloc(len + 1);
  if (!buf) fail("out of memory for the main command");
  if (have > len) have = len;
  memcpy(buf, pre, have);
  read_exact(control_fd, buf + have, len - have);
  buf[len] = 0;
  if (!apply) {
    free(buf);
    return 0;
  }
  argc_n = 0;
  env_n = 0;
  workdir = "/";
  user_spec = NULL;
  discard_disk = 0;
  for (char *p = buf, *next; p < buf + len; p = next) {
    next = p + strlen(p) + 1;
    char *eq = strchr(p, '=');
    if (!eq) return 0;
    *eq = 0;
    if (!command_record(p, eq + 1)) logmsg("ignoring unknown main key %s", p);
  }
  argv_list[argc_n] = NULL;
  env_list[env_n] = NULL;
  return argc_n > 0;
}

/* ---- filesystems ---------------------------------------------------------- */

/* The block device whose virtio-blk serial is `serial` ("image", "upper": set by the host with
 * -device virtio-blk-device,serial=…), as /dev/vdX in buf. Found by serial, not by name: the
 * vdX letters follow probe order, which the host does not promise (docs/VM.md "Devices"). */
static void find_blockdev(const char *serial, char *buf, size_t len) {
  for (int attempt = 0; attempt < 1000; attempt++) {
    if (gc_blockdev_by_serial(serial, buf, len) == 0) {
      wait_for_path(buf, 5000); /* devtmpfs may add the node a moment after sysfs */
      return;
    }
    usleep(5000);
  }
  fail("no virtio-blk device with serial \"%s\" within 5 s", serial);
}

static void setup_root(void) {
  char dev[64];
  /* Lower layer: the image's read-only filesystem (erofs), one file shared by every VM of the
   * image and attached read-only by the host (the device itself refuses writes). */
  find_blockdev("image", dev, sizeof dev);
  must_mount(dev, "/lower", image_fstype, MS_RDONLY, strcmp(image_fstype, "ext4") == 0 ? "noload" : NULL);
  if (has_disk) {
    /* Upper layer: the per-service ext4 disk; kept across restarts by the host. */
    find_blockdev("upper", dev, sizeof dev);
    /* noinit_itable: the disk is made with lazy_itable_init, and zeroing its inode tables
     * in the background (ext4lazyinit) would compete with the service for the vCPU. */
    must_mount(dev, "/upper", "ext4", MS_NOATIME, "noinit_itable");
  } else {
    must_mount("tmpfs", "/upper", "tmpfs", 0, "mode=0755");
  }
  mkdir_p("/upper/u", 0755);
  mkdir_p("/upper/w", 0755);
  must_mount("overlay", "/newroot", "overlay", 0, "lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w");

  must_mount("proc", "/newroot/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  must_mount("sysfs", "/newroot/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  must_mount("devtmpfs", "/newroot/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  must_mount("devpts", "/newroot/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  must_mount("tmpfs", "/newroot/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  must_mount("tmpfs", "/newroot/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");

  for (int i = 0; i < vol_n; i++) {
    char dst[4096];
    snprintf(dst, sizeof dst, "/newroot%s", vols[i].path);
    mkdir_p(dst, 0755);
    must_mount(vols[i].tag, dst, "9p", vols[i].ro ? MS_RDONLY : 0, "trans=virtio,version=9p2000.L,msize=262144");
  }
}

/* File capabilities the image's block filesystem could not carry (an image unpacked by a
 * non-root user, whose host files have no security.capability): set here on the overlay
 * (a copy-up of just those files). A path that is gone or not a regular file is skipped:
 * the image is the guest's own. */
static void apply_capabilities(void) {
  for (int i = 0; i < caps_n; i++) {
    char *sp = strchr(caps[i], ' ');
    if (!sp) continue;
    size_t hex_len = (size_t)(sp - caps[i]);
    unsigned char value[64];
    if (hex_len % 2 || hex_len / 2 > sizeof value) continue;
    int bad = 0;
    for (size_t j = 0; j < hex_len / 2 && !bad; j++) {
      unsigned int byte;
      if (sscanf(caps[i] + 2 * j, "%2x", &byte) != 1) bad = 1;
      value[j] = (unsigned char)byte;
    }
    if (bad) continue;
    char path[4096];
    snprintf(path, sizeof path, "/newroot/%s", sp + 1);
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) continue;
    if (lsetxattr(path, "security.capability", value, hex_len / 2, 0) < 0) logmsg("file capability on %s: %s", sp + 1, strerror(errno));
  }
}

static void setup_identity(void) {
  if (sethostname(hostname, strlen(hostname)) < 0) logmsg("sethostname: %s", strerror(errno));
  gc_write_identity("/newroot", hostname, hosts_lines, hosts_n, dns_servers, dns_n);
}

/* Runs /bin/busybox (from the initramfs) with the given args; fails on error. */
static void busybox(const char *a0, ...) {
  const char *argv[16];
  int n = 0;
  argv[n++] = "busybox";
  argv[n++] = a0;
  va_list ap;
  va_start(ap, a0);
  const char *a;
  while (n < 15 && (a = va_arg(ap, const char *))) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  if (gc_busybox(-1, (char *const *)argv) != 0) {
    char cmd[512] = "";
    for (int i = 1; argv[i]; i++) {
      strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 2);
      strncat(cmd, " ", sizeof cmd - strlen(cmd) - 1);
    }
    fail("network setup failed: %s", cmd);
  }
}

static void setup_network(void) {
  busybox("ip", "link", "set", "dev", "lo", "up", NULL);
  for (int i = 0; i < nic_n; i++) {
    char ifname[256];
    if (gc_iface_by_mac(nics[i].mac, ifname, sizeof ifname) < 0) fail("no network interface with MAC %s", nics[i].mac);
    busybox("ip", "addr", "add", nics[i].cidr, "dev", ifname, NULL);
    busybox("ip", "link", "set", "dev", ifname, "up", NULL);
    if (strcmp(nics[i].gw, "-") != 0) busybox("ip", "route", "add", "default", "via", nics[i].gw, "dev", ifname, NULL);
  }
}

/* ---- the command ----------------------------------------------------------- */

/* Forks the command with its output on the stdout/stderr ports (opened here, closed in init once
 * the child has them); reports `started` once execve() succeeded. */
static pid_t start_command(sigset_t *oldmask) {
  int out_fd = gc_open_port("monocore.stdout", O_WRONLY);
  int err_fd = gc_open_port("monocore.stderr", O_WRONLY);
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) < 0) fail("pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) fail("fork: %s", strerror(errno));
  if (pid == 0) {
    close(errpipe[0]);
    setsid();
    for (int i = 0; i < rlim_n; i++) {
      struct rlimit r = { rlims[i].soft, rlims[i].hard };
      setrlimit(rlims[i].res, &r);
    }
    int devnull = open("/newroot/dev/null", O_RDWR);
    if (devnull < 0) devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) dup2(devnull, 0);
    if (out_fd >= 0) dup2(out_fd, 1); else if (devnull >= 0) dup2(devnull, 1);
    if (err_fd >= 0) dup2(err_fd, 2); else if (devnull >= 0) dup2(devnull, 2);
    int code;
    if (chroot("/newroot") < 0 || chdir("/") < 0) {
      code = errno;
      dprintf(2, "monocore-init: chroot: %s\n", strerror(code));
      _exit(125);
    }
    if (chdir(workdir) < 0) {
      code = errno;
      dprintf(2, "monocore-init: workdir %s: %s\n", workdir, strerror(code));
      write_all(errpipe[1], "w", 1);
      _exit(125);
    }
    {
      char uerr[700];
      const char *msg = gc_switch_user(user_spec, env_list, &env_n, uerr, sizeof uerr);
      if (msg) {
        dprintf(2, "monocore-init: %s\n", msg);
        write_all(errpipe[1], "u", 1);
        _exit(125);
      }
    }
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigprocmask(SIG_SETMASK, oldmask, NULL);
    code = gc_exec_path(argv_list, env_list, env_n);
    dprintf(2, "monocore-init: exec %s: %s\n", argv_list[0], strerror(code));
    write_all(errpipe[1], "e", 1);
    _exit(code == ENOENT || code == ENOTDIR ? 127 : 126);
  }
  close(errpipe[1]);
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  char c;
  ssize_t n;
  do n = read(errpipe[0], &c, 1); while (n < 0 && errno == EINTR);
  close(errpipe[0]);
  if (n == 0) control("started %.3f\n", uptime());
  return pid;
}

/* ---- the agent ---------------------------------------------------------------- */

/* The agent's exit code when the host attached no agent port: do not respawn. */
#define AGENT_NO_PORT 3
static pid_t agent_pid;

/* Forks the guest agent (agent.c): it opens the "monocore.agent" port, keeps an fd
 * of our static busybox, chroots into the guest root and serves the host's execs
 * and file transfers with the spec's env, workdir, user and rlimits as defaults. */
static void start_agent(const sigset_t *oldmask, int sfd) {
  pid_t pid = fork();
  if (pid < 0) {
    logmsg("fork agent: %s", strerror(errno));
    return;
  }
  if (pid > 0) {
    agent_pid = pid;
    return;
  }
  close(sfd);
  if (control_fd >= 0) close(control_fd);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  sigprocmask(SIG_SETMASK, oldmask, NULL);
  gc_log_name = "monocore-agent";
  struct agent_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.port_fd = gc_open_port("monocore.agent", O_RDWR | O_NONBLOCK);
  if (cfg.port_fd < 0) {
    logmsg("port monocore.agent not found: no agent");
    _exit(AGENT_NO_PORT);
  }
  cfg.busybox_fd = open("/bin/busybox", O_PATH | O_CLOEXEC);
  cfg.root = "/newroot";
  cfg.env = env_list;
  cfg.env_n = env_n;
  cfg.workdir = workdir;
  cfg.user = user_spec;
  cfg.rlimits = rlims;
  cfg.rlimit_n = rlim_n;
  cfg.hosts = hosts_lines;
  cfg.hosts_n = hosts_n;
  cfg.hostname = hostname;
  _exit(agent_run(&cfg));
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "agent") == 0) return agent_cli(argc, argv);
  if (getpid() != 1) {
    fprintf(stderr, "monocore-init must run as PID 1 (or as \"%s agent --connect SOCKET\")\n", argv[0]);
    return 2;
  }
  mount("proc", "/proc", "proc", 0, NULL);
  mount("sysfs", "/sys", "sysfs", 0, NULL);
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  /* The initramfs has no /dev/console node, so fds 0-2 may be closed: fill
   * them with /dev/null so later opens/dup2s never collide with them. */
  for (;;) {
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0) break;
    if (fd > 2) { close(fd); break; }
  }
  logmsg("start");

  /* Signals PID 1 handles through a signalfd: SIGCHLD to reap, the rest are
   * forwarded to the command. */
  sigset_t mask, oldmask;
  sigemptyset(&mask);
  int fwd[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGPWR };
  for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++) sigaddset(&mask, fwd[i]);
  sigprocmask(SIG_BLOCK, &mask, &oldmask);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

  load_modules();
  logmsg("modules loaded");
  control_fd = gc_open_port("monocore.control", O_RDWR);
  if (control_fd < 0) fail("control port monocore.control not found");
  control("boot %.3f\n", uptime());
  read_spec();
  if (probe_only) { /* boot probe: kernel + initramfs + control channel work */
    control("exit 0 %.3f\n", uptime());
    power_off();
  }
  setup_root();
  apply_capabilities();
  setup_identity();
  setup_network();
  if (agent_enabled) start_agent(&oldmask, sfd);

  pid_t child = -1;
  if (sandbox_mode) {
    /* No command: the VM is up once the agent is; it serves until stopped. */
    control("started %.3f\n", uptime());
  } else {
    logmsg("exec");
    child = start_command(&oldmask);
  }

  int status = -1;
  char cbuf[256];
  size_t clen = 0;
  double agent_restart_at = 0;
  struct pollfd pfd[2] = { { sfd, POLLIN, 0 }, { control_fd, POLLIN, 0 } };
  while (status < 0) {
    int timeout = -1;
    if (agent_enabled && agent_pid <= 0) {
      double wait_s = agent_restart_at - uptime();
      if (wait_s <= 0) {
        start_agent(&oldmask, sfd);
        continue;
      }
      timeout = (int)(wait_s * 1000) + 1;
    }
    if (poll(pfd, 2, timeout) < 0) continue;
    if (pfd[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGCHLD) {
        if (sandbox_mode) {
          if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGPWR) status = 0;
        } else {
          kill(child, (int)si.ssi_signo);
        }
      }
      for (;;) { /* reap everything: orphans get re-parented to us */
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p <= 0) break;
        if (p == child) status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (p == agent_pid) {
          agent_pid = 0;
          if (WIFEXITED(st) && WEXITSTATUS(st) == AGENT_NO_PORT) {
            agent_enabled = 0; /* nothing to serve: the host attached no agent port */
          } else {
            /* Respawn, 1 s apart so a crashing agent cannot spin; the host re-handshakes. */
            logmsg("agent ended (%s %d); restarting it", WIFEXITED(st) ? "code" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
            agent_restart_at = uptime() + 1.0;
          }
        }
      }
    }
    if (pfd[1].revents & POLLIN) {
      ssize_t n = read(control_fd, cbuf + clen, sizeof cbuf - 1 - clen);
      if (n > 0) {
        clen += (size_t)n;
        cbuf[clen] = 0;
        char *nl;
        while ((nl = strchr(cbuf, '\n'))) {
          *nl = 0;
          size_t used = (size_t)(nl + 1 - cbuf); /* the line, and below a `main` body read with it */
          int sig;
          unsigned long mlen;
          if (sscanf(cbuf, "signal %d", &sig) == 1 && sig > 0 && sig < NSIG) {
            if (!sandbox_mode) kill(child, sig);
            else if (sig == SIGTERM || sig == SIGINT || sig == SIGKILL) status = 0;
          } else if (sscanf(cbuf, "main %lu", &mlen) == 1) {
            size_t have = clen - used;
            if (have > mlen) have = mlen;
            int ok = read_main(mlen, nl + 1, have, sandbox_mode);
            used += have;
            if (!sandbox_mode || !ok) {
              control("error %s\n", sandbox_mode ? "bad main command message" : "a main command for a VM that already has one");
            } else {
              sandbox_mode = 0; /* from here on exactly a VM that booted with this command */
              logmsg("exec (main)");
              child = start_command(&oldmask);
            }
          }
          memmove(cbuf, cbuf + used, clen - used + 1);
          clen -= used;
        }
        if (clen >= sizeof cbuf - 1) clen = 0;
      } else if (n == 0) {
        pfd[1].fd = -1; /* host hung up: keep running, the host will kill us */
      }
    }
  }
  if (sandbox_mode) {
    /* A graceful stop: every process gets SIGTERM and 2 s to end before the SIGKILL below. */
    kill(-1, SIGTERM);
    double until = uptime() + 2.0;
    while (uptime() < until) {
      pid_t p = waitpid(-1, NULL, WNOHANG);
      if (p < 0 && errno == ECHILD) break;
      if (p <= 0) usleep(20000);
    }
  }
  /* The command is gone: end its leftovers, flush the writable layer (unless the host discards
   * it: ~40-50 ms under TCG), report. */
  kill(-1, SIGKILL);
  while (waitpid(-1, NULL, 0) > 0) {}
  if (!discard_disk) {
    sync();
    umount2("/newroot", MNT_DETACH);
  }
  control("exit %d %.3f\n", status, uptime());
  logmsg("exit %d", status);
  power_off();
  return 0;
}

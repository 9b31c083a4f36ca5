/*
 * What the guest init (init.c) and the guest agent (agent.c) share: users
 * resolved from the guest's own /etc/passwd and /etc/group, the PATH lookup of
 * execve, the virtio-serial port lookup, logging. One home for each rule, so a
 * command started by init and one started by the agent behave the same.
 */
#ifndef MONOCORE_GUEST_COMMON_H
#define MONOCORE_GUEST_COMMON_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define GC_MAX_GROUPS 64

/* Where logs go: the guest console (default) or stderr (the agent as a host process in tests). */
extern int gc_log_to_stderr;
extern const char *gc_log_name;

void gc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes everything unless the fd fails (EINTR retried); returns 0 or -1. */
int gc_write_all(int fd, const void *buf, size_t len);
double gc_uptime(void);
int gc_mkdir_p(const char *path, mode_t mode);

/* Decimal id that fits 32 bits (never -1); 1 when s is all digits. */
int gc_parse_id(const char *s, unsigned long *out);

struct gc_user {
  uid_t uid;
  gid_t gid;
  gid_t groups[GC_MAX_GROUPS];
  int ngroups;
  char home[512]; /* "" without a passwd entry */
};

/* Resolves an OCI user string ("name", "uid", "name:group", "uid:gid", ...)
 * against /etc/passwd and /etc/group of the current root. NULL, or an error
 * message in err. */
const char *gc_resolve_user(const char *spec, struct gc_user *u, char *err, size_t errlen);

/* In a child about to exec: resolve spec, setgroups/setgid/setuid, and add
 * HOME (from passwd, else "/") to env when it has none. env must have room for
 * one more entry and a NULL. NULL or an error message. An empty/NULL spec is root. */
const char *gc_switch_user(const char *spec, char **env, int *env_n, char *err, size_t errlen);

/* The value of name in a KEY=value list (the last entry wins), or NULL. */
const char *gc_env_get(char *const *env, int env_n, const char *name);

/* execve with a PATH lookup in the command's own env (OCI default PATH when
 * unset). Returns only on failure, with the errno that decides 126 vs 127. */
int gc_exec_path(char *const *argv, char *const *env, int env_n);

/* Opens /dev/vportNpM whose virtio name is `name`; waits up to ~5 s. -1 if absent. */
int gc_open_port(const char *name, int flags);
/* One look through /sys/block for the virtio-blk disk whose serial is `serial` (set by the host:
 * -device virtio-blk-device,serial=…); its /dev/vdX into buf. 0 when found, -1 otherwise. */
int gc_blockdev_by_serial(const char *serial, char *buf, size_t len);

/* Writes <prefix>/etc/hosts (localhost, 127.0.1.1 hostname, then the extra lines),
 * <prefix>/etc/hostname and, when dns_n > 0, <prefix>/etc/resolv.conf. */
void gc_write_identity(const char *prefix, const char *hostname, char *const *hosts, int hosts_n, char *const *dns, int dns_n);

/* The network interface whose MAC is mac (case-insensitive); 0, or -1 if none. */
int gc_iface_by_mac(const char *mac, char *ifname, size_t len);

/* Runs the initramfs' static busybox with argv (argv[0] = "busybox"): through
 * fd (execveat, works after a chroot) or, with fd < 0, /bin/busybox. Returns
 * its exit status, or -1 when it could not run or was killed. */
int gc_busybox(int fd, char *const *argv);

struct gc_rlimit {
  int res;
  rlim_t soft, hard;
};

/* The agent, run by init in a forked child after the guest is set up (agent.c). */
struct agent_config {
  /* Transport: an open virtio port fd, or a unix socket path to connect to (host tests). */
  int port_fd;
  const char *connect_path;
  /* chroot into this dir before serving (the guest root); NULL = stay (host tests). */
  const char *root;
  /* The initramfs' static busybox, opened before the chroot (tool=busybox execs); -1 = none. */
  int busybox_fd;
  /* Defaults for execs: the VM spec's env, workdir, user, rlimits. */
  char **env;
  int env_n;
  const char *workdir;
  const char *user;
  const struct gc_rlimit *rlimits;
  int rlimit_n;
  /* /etc/hosts lines from the spec (kept when a refresh changes only the hostname). */
  char **hosts;
  int hosts_n;
  const char *hostname;
  /* Host-process test mode: no cgroups, no clock/hostname/entropy/network changes. */
  int test_mode;
  /* The bulk lane (docs/AGENT.md "Bulk lane"): a file standing in for the lane device (host
   * tests); NULL in a VM, where the agent finds the virtio-blk disk whose serial is LANE_SERIAL. */
  const char *lane_path;
};

#define LANE_SERIAL "monocore-lane"
#define LANE_SLOT_BYTES (1024 * 1024)
#define LANE_MAX_SLOTS 64

/* Serves the agent protocol (docs/AGENT.md); returns only in test mode, when the host is gone. */
int agent_run(struct agent_config *cfg);
/* `init agent --connect PATH [...]`: the agent as an ordinary process (protocol tests). */
int agent_cli(int argc, char **argv);

#endif

/* Shared by init.c and agent.c: see guest-common.h. */
#define _GNU_SOURCE
#include "guest-common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int gc_log_to_stderr;
const char *gc_log_name = "monocore-init";

double gc_uptime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void gc_log(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (gc_log_to_stderr) {
    dprintf(2, "%s: %s\n", gc_log_name, buf);
    return;
  }
  int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) {
    dprintf(fd, "%s[%.3f]: %s\n", gc_log_name, gc_uptime(), buf);
    close(fd);
  }
}

int gc_write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int gc_mkdir_p(const char *path, mode_t mode) {
  char tmp[4096];
  if (strlen(path) >= sizeof tmp) return -1;
  strcpy(tmp, path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -1;
      *p = '/';
    }
  }
  if (mkdir(tmp, mode) < 0 && errno != EEXIST) return -1;
  return 0;
}

int gc_parse_id(const char *s, unsigned long *out) {
  if (!*s) return 0;
  unsigned long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    v = v * 10 + (unsigned long)(*p - '0');
    if (v > 0xFFFFFFFEUL) return 0;
  }
  *out = v;
  return 1;
}

/* Finds a passwd/group line whose field 0 equals name (by_name) or whose
 * field 2 equals id; copies its fields into f. Files are read by hand: a
 * static glibc getpwnam would try to load NSS. */
static int find_entry(const char *file, const char *name, unsigned long id, int by_name, char line[1024], char *f[8]) {
  FILE *fp = fopen(file, "re");
  if (!fp) return 0;
  while (fgets(line, 1024, fp)) {
    line[strcspn(line, "\n")] = 0;
    int n = 0;
    char *p = line;
    for (; n < 8; n++) {
      f[n] = p;
      char *c = strchr(p, ':');
      if (!c) { n++; break; }
      *c = 0;
      p = c + 1;
    }
    for (int i = n; i < 8; i++) f[i] = "";
    if (n < 3) continue;
    unsigned long v;
    if (by_name ? strcmp(f[0], name) == 0 : (gc_parse_id(f[2], &v) && v == id)) { fclose(fp); return 1; }
  }
  fclose(fp);
  return 0;
}

const char *gc_resolve_user(const char *user_spec, struct gc_user *u, char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  u->ngroups = 1; /* root: groups = { 0 } */
  if (!user_spec || !*user_spec) return NULL;
  char spec[512];
  if (strlen(user_spec) >= sizeof spec) { snprintf(err, errlen, "user \"%.64s...\": too long", user_spec); return err; }
  strcpy(spec, user_spec);
  char *grp = strchr(spec, ':');
  if (grp) *grp++ = 0;
  char pwline[1024], *pw[8];
  unsigned long uid, gid = 0;
  int have_pw;
  const char *uname = NULL;
  if (gc_parse_id(spec, &uid)) {
    have_pw = find_entry("/etc/passwd", NULL, uid, 0, pwline, pw);
  } else {
    have_pw = find_entry("/etc/passwd", spec, 0, 1, pwline, pw);
    if (!have_pw) { snprintf(err, errlen, "user \"%s\": no such user in /etc/passwd of the image", spec); return err; }
    if (!gc_parse_id(pw[2], &uid)) { snprintf(err, errlen, "user \"%s\": bad uid in /etc/passwd", spec); return err; }
  }
  if (have_pw) {
    uname = pw[0];
    snprintf(u->home, sizeof u->home, "%s", pw[5]);
    if (!gc_parse_id(pw[3], &gid)) gid = 0;
  } else {
    gid = 0; /* numeric uid without a passwd entry: gid 0, like runc */
  }
  if (grp) {
    if (!gc_parse_id(grp, &gid)) {
      char grline[1024], *gr[8];
      if (!find_entry("/etc/group", grp, 0, 1, grline, gr) || !gc_parse_id(gr[2], &gid)) {
        snprintf(err, errlen, "user \"%s\": no such group \"%s\" in /etc/group of the image", user_spec, grp);
        return err;
      }
    }
  }
  u->uid = (uid_t)uid;
  u->gid = (gid_t)gid;
  u->ngroups = 0;
  u->groups[u->ngroups++] = (gid_t)gid;
  if (uname && !grp) { /* initgroups-like: supplementary groups only when no group was given */
    FILE *fp = fopen("/etc/group", "re");
    char line[4096];
    while (fp && u->ngroups < GC_MAX_GROUPS && fgets(line, sizeof line, fp)) {
      line[strcspn(line, "\n")] = 0;
      char *f[4] = { line, NULL, NULL, NULL };
      int n = 1;
      for (char *p = line; n < 4 && (p = strchr(p, ':')); n++) { *p++ = 0; f[n] = p; }
      unsigned long g;
      if (n < 4 || !gc_parse_id(f[2], &g) || g == gid) continue;
      for (char *save = NULL, *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save))
        if (strcmp(m, uname) == 0) { u->groups[u->ngroups++] = (gid_t)g; break; }
    }
    if (fp) fclose(fp);
  }
  return NULL;
}

const char *gc_switch_user(const char *user_spec, char **env, int *env_n, char *err, size_t errlen) {
  if (!user_spec || !*user_spec) return NULL;
  struct gc_user u;
  const char *msg = gc_resolve_user(user_spec, &u, err, errlen);
  if (msg) return msg;
  if (setgroups((size_t)u.ngroups, u.groups) < 0) { snprintf(err, errlen, "user \"%s\": setgroups: %s", user_spec, strerror(errno)); return err; }
  if (setgid(u.gid) < 0) { snprintf(err, errlen, "user \"%s\": setgid %u: %s", user_spec, (unsigned)u.gid, strerror(errno)); return err; }
  if (setuid(u.uid) < 0) { snprintf(err, errlen, "user \"%s\": setuid %u: %s", user_spec, (unsigned)u.uid, strerror(errno)); return err; }
  if (!gc_env_get(env, *env_n, "HOME")) {
    static char homevar[600];
    snprintf(homevar, sizeof homevar, "HOME=%s", u.home[0] ? u.home : "/");
    env[(*env_n)++] = homevar;
    env[*env_n] = NULL;
  }
  return NULL;
}

const char *gc_env_get(char *const *env, int env_n, const char *name) {
  size_t len = strlen(name);
  const char *found = NULL;
  for (int i = 0; i < env_n; i++)
    if (strncmp(env[i], name, len) == 0 && env[i][len] == '=') found = env[i] + len + 1;
  return found;
}

int gc_exec_path(char *const *argv, char *const *env, int env_n) {
  const char *cmd = argv[0];
  if (strchr(cmd, '/')) {
    execve(cmd, argv, env);
    return errno;
  }
  if (!cmd[0]) return ENOENT;
  const char *path = gc_env_get(env, env_n, "PATH");
  if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  int saw_eacces = 0, last = ENOENT;
  char *copy = strdup(path);
  if (!copy) return ENOMEM;
  for (char *save = NULL, *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", dir[0] ? dir : ".", cmd);
    execve(full, argv, env);
    if (errno == EACCES) saw_eacces = 1;
    else if (errno != ENOENT && errno != ENOTDIR) last = errno;
  }
  free(copy);
  return saw_eacces ? EACCES : last;
}

int gc_blockdev_by_serial(const char *serial, char *buf, size_t len) {
  DIR *d = opendir("/sys/block");
  if (!d) return -1;
  struct dirent *e;
  int found = -1;
  while (found < 0 && (e = readdir(d))) {
    if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) > 16) continue; /* vda..vdzz */
    char p[512], got[64] = {0};
    snprintf(p, sizeof p, "/sys/block/%s/serial", e->d_name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, got, sizeof got - 1);
    close(fd);
    if (n <= 0) continue;
    got[strcspn(got, "\n")] = 0;
    if (strcmp(got, serial) == 0) {
      snprintf(buf, len, "/dev/%s", e->d_name);
      found = 0;
    }
  }
  closedir(d);
  return found;
}

int gc_open_port(const char *name, int flags) {
  for (int attempt = 0; attempt < 500; attempt++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512], buf[128] = {0};
        snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[strcspn(buf, "\n")] = 0;
        if (strcmp(buf, name) == 0) {
          char dev[512];
          snprintf(dev, sizeof dev, "/dev/%s", e->d_name);
          int pfd = open(dev, flags | O_CLOEXEC);
          if (pfd >= 0) {
            closedir(d);
            return pfd;
          }
        }
      }
      closedir(d);
    }
    usleep(10000);
  }
  return -1;
}

static void write_file(const char *path, const char *content) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && errno == ELOOP) { /* a symlink (e.g. to a resolver stub): replace it */
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  }
  if (fd < 0) {
    gc_log("cannot write %s: %s", path, strerror(errno));
    return;
  }
  gc_write_all(fd, content, strlen(content));
  close(fd);
}

void gc_write_identity(const char *prefix, const char *hostname, char *const *hosts, int hosts_n, char *const *dns, int dns_n) {
  char path[4200];
  snprintf(path, sizeof path, "%s/etc", prefix);
  gc_mkdir_p(path, 0755);
  static char buf[65536];
  size_t off = (size_t)snprintf(buf, sizeof buf, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", hostname);
  for (int i = 0; i < hosts_n && off < sizeof buf; i++) off += (size_t)snprintf(buf + off, sizeof buf - off, "%s\n", hosts[i]);
  snprintf(path, sizeof path, "%s/etc/hosts", prefix);
  write_file(path, buf);
  snprintf(buf, sizeof buf, "%s\n", hostname);
  snprintf(path, sizeof path, "%s/etc/hostname", prefix);
  write_file(path, buf);
  if (dns_n > 0) {
    off = 0;
    for (int i = 0; i < dns_n && off < sizeof buf; i++) off += (size_t)snprintf(buf + off, sizeof buf - off, "nameserver %s\n", dns[i]);
    snprintf(path, sizeof path, "%s/etc/resolv.conf", prefix);
    write_file(path, buf);
  }
}

int gc_iface_by_mac(const char *mac, char *ifname, size_t len) {
  int found = -1;
  DIR *d = opendir("/sys/class/net");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[512], addr[64] = {0};
    snprintf(p, sizeof p, "/sys/class/net/%s/address", e->d_name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t r = read(fd, addr, sizeof addr - 1);
    close(fd);
    if (r <= 0) continue;
    addr[strcspn(addr, "\n")] = 0;
    if (strcasecmp(addr, mac) == 0) {
      snprintf(ifname, len, "%s", e->d_name);
      found = 0;
    }
  }
  if (d) closedir(d);
  return found;
}

int gc_busybox(int fd, char *const *argv) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); }
    static char *const noenv[] = { "PATH=/bin:/sbin:/usr/bin:/usr/sbin", NULL };
    if (fd >= 0) syscall(SYS_execveat, fd, "", argv, noenv, AT_EMPTY_PATH);
    else execve("/bin/busybox", argv, noenv);
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

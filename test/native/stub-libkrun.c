/* STUB libkrun for tests — NOT the real libkrun; records calls */
/*
 * Built by test/native/stub-libkrun.ts with `gcc -shared -fPIC` into a temp dir.
 * It exports the libkrun.h symbols that @monocore/native binds, and every call
 * appends one line to the file named by STUB_LIBKRUN_RECORD:
 *
 *   krun_set_root(ctx_id=1, root_path="/a b")
 *   krun_set_exec(ctx_id=1, exec_path="/bin/sh", argv=["-c", "", NULL], envp=NULL)
 *
 * Strings are C-escaped byte by byte (\\ \" \n \r \t, other bytes < 0x20, 0x7f
 * and >= 0x80 as \xNN), so the test can compare them with the exact UTF-8 bytes
 * it sent. Arrays are printed element by element and end with NULL only when
 * the NULL terminator was actually observed (capped at 4096 elements: a missing
 * terminator shows up as "...UNTERMINATED").
 *
 * Environment knobs (all optional):
 *   STUB_LIBKRUN_RECORD        file to append call lines to
 *   STUB_LIBKRUN_FAIL          "fn:code,fn:code" — return code for those functions
 *                              (e.g. "krun_set_root:-2" makes krun_set_root fail with -ENOENT)
 *   STUB_LIBKRUN_CTX_BASE      first context id returned by krun_create_ctx (default 1)
 *   STUB_LIBKRUN_ENTER         what krun_start_enter does:
 *                                "exit:N"   exit(N) (default "exit:0")
 *                                "pause"    pause() until a signal ends the process
 *                                "return:N" return N (a setup error)
 *   STUB_LIBKRUN_GUEST_STDOUT / STUB_LIBKRUN_GUEST_STDERR
 *                              text krun_start_enter writes to the output/err fd given
 *                              to krun_add_virtio_console_default (stands in for the guest)
 *   STUB_LIBKRUN_GUEST_WRITE   "rel/path=content": krun_start_enter writes content to
 *                              <root_path>/rel/path (stands in for a guest write via virtiofs)
 *   STUB_LIBKRUN_GUEST_READ    "rel/path[,rel/path]": krun_start_enter records the content of
 *                              each <root_path>/rel/path as a guest_read(...) line
 *
 * Compile with -DSTUB_LIBKRUN_MINIMAL to get only the oldest core symbols
 * (stands in for an old libkrun, to test lenient loading of optional symbols).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int32_t next_ctx = -1;
static char root_path_seen[4096];
static int console_out_fd = -1;
static int console_err_fd = -1;

static FILE *rec_open(void) {
  const char *path = getenv("STUB_LIBKRUN_RECORD");
  if (!path || !*path) return NULL;
  return fopen(path, "a");
}

static void put_str(FILE *f, const char *s) {
  if (!s) { fputs("NULL", f); return; }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if (c == '\\') fputs("\\\\", f);
    else if (c == '"') fputs("\\\"", f);
    else if (c == '\n') fputs("\\n", f);
    else if (c == '\r') fputs("\\r", f);
    else if (c == '\t') fputs("\\t", f);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\x%02x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void put_arr(FILE *f, const char *const arr[]) {
  if (!arr) { fputs("NULL", f); return; }
  fputc('[', f);
  for (int i = 0; i < 4096; i++) {
    if (i) fputs(", ", f);
    if (!arr[i]) { fputs("NULL]", f); return; }
    put_str(f, arr[i]);
  }
  fputs("...UNTERMINATED]", f);
}

/* Return code chosen for fn through STUB_LIBKRUN_FAIL, or dflt. */
static int32_t ret_for(const char *fn, int32_t dflt) {
  const char *spec = getenv("STUB_LIBKRUN_FAIL");
  if (!spec) return dflt;
  size_t n = strlen(fn);
  const char *p = spec;
  while ((p = strstr(p, fn)) != NULL) {
    bool starts = (p == spec || p[-1] == ',');
    if (starts && p[n] == ':') return (int32_t)strtol(p + n + 1, NULL, 10);
    p += n;
  }
  return dflt;
}

#define REC(fn, ...)                                  \
  do {                                                \
    FILE *f_ = rec_open();                            \
    if (f_) {                                         \
      fputs(fn "(", f_);                              \
      __VA_ARGS__;                                    \
      fputs(")\n", f_);                               \
      fclose(f_);                                     \
    }                                                 \
  } while (0)

int32_t krun_set_log_level(uint32_t level) {
  REC("krun_set_log_level", fprintf(f_, "level=%" PRIu32, level));
  return ret_for("krun_set_log_level", 0);
}

int32_t krun_create_ctx(void) {
  if (next_ctx < 0) {
    const char *b = getenv("STUB_LIBKRUN_CTX_BASE");
    next_ctx = b ? (int32_t)strtol(b, NULL, 10) : 1;
  }
  int32_t r = ret_for("krun_create_ctx", next_ctx);
  if (r >= 0) next_ctx++;
  REC("krun_create_ctx", fprintf(f_, "=> %" PRId32, r));
  return r;
}

int32_t krun_free_ctx(uint32_t ctx_id) {
  REC("krun_free_ctx", fprintf(f_, "ctx_id=%" PRIu32, ctx_id));
  return ret_for("krun_free_ctx", 0);
}

int32_t krun_set_vm_config(uint32_t ctx_id, uint8_t num_vcpus, uint32_t ram_mib) {
  REC("krun_set_vm_config", fprintf(f_, "ctx_id=%" PRIu32 ", num_vcpus=%u, ram_mib=%" PRIu32, ctx_id, (unsigned)num_vcpus, ram_mib));
  return ret_for("krun_set_vm_config", 0);
}

int32_t krun_set_root(uint32_t ctx_id, const char *root_path) {
  REC("krun_set_root", fprintf(f_, "ctx_id=%" PRIu32 ", root_path=", ctx_id); put_str(f_, root_path));
  if (root_path) snprintf(root_path_seen, sizeof root_path_seen, "%s", root_path);
  return ret_for("krun_set_root", 0);
}

int32_t krun_set_workdir(uint32_t ctx_id, const char *workdir_path) {
  REC("krun_set_workdir", fprintf(f_, "ctx_id=%" PRIu32 ", workdir_path=", ctx_id); put_str(f_, workdir_path));
  return ret_for("krun_set_workdir", 0);
}

int32_t krun_set_exec(uint32_t ctx_id, const char *exec_path, const char *const argv[], const char *const envp[]) {
  REC("krun_set_exec", fprintf(f_, "ctx_id=%" PRIu32 ", exec_path=", ctx_id); put_str(f_, exec_path);
      fputs(", argv=", f_); put_arr(f_, argv); fputs(", envp=", f_); put_arr(f_, envp));
  return ret_for("krun_set_exec", 0);
}

int32_t krun_start_enter(uint32_t ctx_id);

#ifndef STUB_LIBKRUN_MINIMAL
int32_t krun_init_log(int target_fd, uint32_t level, uint32_t style, uint32_t options) {
  REC("krun_init_log", fprintf(f_, "target_fd=%d, level=%" PRIu32 ", style=%" PRIu32 ", options=%" PRIu32, target_fd, level, style, options));
  return ret_for("krun_init_log", 0);
}

int32_t krun_add_virtiofs(uint32_t ctx_id, const char *c_tag, const char *c_path) {
  REC("krun_add_virtiofs", fprintf(f_, "ctx_id=%" PRIu32 ", c_tag=", ctx_id); put_str(f_, c_tag); fputs(", c_path=", f_); put_str(f_, c_path));
  return ret_for("krun_add_virtiofs", 0);
}

int32_t krun_add_virtiofs3(uint32_t ctx_id, const char *c_tag, const char *c_path, uint64_t shm_size, bool read_only) {
  REC("krun_add_virtiofs3", fprintf(f_, "ctx_id=%" PRIu32 ", c_tag=", ctx_id); put_str(f_, c_tag); fputs(", c_path=", f_); put_str(f_, c_path);
      fprintf(f_, ", shm_size=%" PRIu64 ", read_only=%s", shm_size, read_only ? "true" : "false"));
  return ret_for("krun_add_virtiofs3", 0);
}

int32_t krun_add_disk(uint32_t ctx_id, const char *block_id, const char *disk_path, bool read_only) {
  REC("krun_add_disk", fprintf(f_, "ctx_id=%" PRIu32 ", block_id=", ctx_id); put_str(f_, block_id); fputs(", disk_path=", f_); put_str(f_, disk_path);
      fprintf(f_, ", read_only=%s", read_only ? "true" : "false"));
  return ret_for("krun_add_disk", 0);
}

int32_t krun_set_port_map(uint32_t ctx_id, const char *const port_map[]) {
  REC("krun_set_port_map", fprintf(f_, "ctx_id=%" PRIu32 ", port_map=", ctx_id); put_arr(f_, port_map));
  return ret_for("krun_set_port_map", 0);
}

int32_t krun_set_rlimits(uint32_t ctx_id, const char *const rlimits[]) {
  REC("krun_set_rlimits", fprintf(f_, "ctx_id=%" PRIu32 ", rlimits=", ctx_id); put_arr(f_, rlimits));
  return ret_for("krun_set_rlimits", 0);
}

int32_t krun_set_env(uint32_t ctx_id, const char *const envp[]) {
  REC("krun_set_env", fprintf(f_, "ctx_id=%" PRIu32 ", envp=", ctx_id); put_arr(f_, envp));
  return ret_for("krun_set_env", 0);
}

int32_t krun_set_console_output(uint32_t ctx_id, const char *c_filepath) {
  REC("krun_set_console_output", fprintf(f_, "ctx_id=%" PRIu32 ", c_filepath=", ctx_id); put_str(f_, c_filepath));
  return ret_for("krun_set_console_output", 0);
}

int32_t krun_add_virtio_console_default(uint32_t ctx_id, int input_fd, int output_fd, int err_fd) {
  REC("krun_add_virtio_console_default", fprintf(f_, "ctx_id=%" PRIu32 ", input_fd=%d, output_fd=%d, err_fd=%d", ctx_id, input_fd, output_fd, err_fd));
  console_out_fd = output_fd;
  console_err_fd = err_fd;
  return ret_for("krun_add_virtio_console_default", 0);
}

int32_t krun_disable_implicit_vsock(uint32_t ctx_id) {
  REC("krun_disable_implicit_vsock", fprintf(f_, "ctx_id=%" PRIu32, ctx_id));
  return ret_for("krun_disable_implicit_vsock", 0);
}

int32_t krun_add_vsock(uint32_t ctx_id, uint32_t tsi_features) {
  REC("krun_add_vsock", fprintf(f_, "ctx_id=%" PRIu32 ", tsi_features=%" PRIu32, ctx_id, tsi_features));
  return ret_for("krun_add_vsock", 0);
}

int32_t krun_add_vsock_port(uint32_t ctx_id, uint32_t port, const char *c_filepath) {
  REC("krun_add_vsock_port", fprintf(f_, "ctx_id=%" PRIu32 ", port=%" PRIu32 ", c_filepath=", ctx_id, port); put_str(f_, c_filepath));
  return ret_for("krun_add_vsock_port", 0);
}

int32_t krun_set_net_mac(uint32_t ctx_id, uint8_t *const c_mac) {
  REC("krun_set_net_mac", fprintf(f_, "ctx_id=%" PRIu32 ", c_mac=", ctx_id);
      if (!c_mac) fputs("NULL", f_); else fprintf(f_, "%02x:%02x:%02x:%02x:%02x:%02x", c_mac[0], c_mac[1], c_mac[2], c_mac[3], c_mac[4], c_mac[5]));
  return ret_for("krun_set_net_mac", 0);
}

int32_t krun_set_passt_fd(uint32_t ctx_id, int fd) {
  REC("krun_set_passt_fd", fprintf(f_, "ctx_id=%" PRIu32 ", fd=%d", ctx_id, fd));
  return ret_for("krun_set_passt_fd", 0);
}

int32_t krun_setuid(uint32_t ctx_id, uid_t uid) {
  REC("krun_setuid", fprintf(f_, "ctx_id=%" PRIu32 ", uid=%u", ctx_id, (unsigned)uid));
  return ret_for("krun_setuid", 0);
}

int32_t krun_setgid(uint32_t ctx_id, gid_t gid) {
  REC("krun_setgid", fprintf(f_, "ctx_id=%" PRIu32 ", gid=%u", ctx_id, (unsigned)gid));
  return ret_for("krun_setgid", 0);
}

int32_t krun_get_max_vcpus(void) {
  int32_t r = ret_for("krun_get_max_vcpus", 8);
  REC("krun_get_max_vcpus", fprintf(f_, "=> %" PRId32, r));
  return r;
}

int32_t krun_has_feature(uint64_t feature) {
  REC("krun_has_feature", fprintf(f_, "feature=%" PRIu64, feature));
  return ret_for("krun_has_feature", 1);
}

int32_t krun_get_shutdown_eventfd(uint32_t ctx_id) {
  REC("krun_get_shutdown_eventfd", fprintf(f_, "ctx_id=%" PRIu32, ctx_id));
  return ret_for("krun_get_shutdown_eventfd", -ENOSYS);
}
#endif /* !STUB_LIBKRUN_MINIMAL */

static void guest_effects(void) {
  const char *out = getenv("STUB_LIBKRUN_GUEST_STDOUT");
  const char *err = getenv("STUB_LIBKRUN_GUEST_STDERR");
  if (out && console_out_fd >= 0) { ssize_t w = write(console_out_fd, out, strlen(out)); (void)w; }
  if (err && console_err_fd >= 0) { ssize_t w = write(console_err_fd, err, strlen(err)); (void)w; }

  const char *wr = getenv("STUB_LIBKRUN_GUEST_WRITE");
  if (wr && root_path_seen[0]) {
    const char *eq = strchr(wr, '=');
    if (eq) {
      char path[8192];
      snprintf(path, sizeof path, "%s/%.*s", root_path_seen, (int)(eq - wr), wr);
      FILE *g = fopen(path, "w");
      if (g) { fputs(eq + 1, g); fclose(g); }
      REC("guest_write", put_str(f_, path); fprintf(f_, ", ok=%s", g ? "true" : "false"));
    }
  }
  const char *rd = getenv("STUB_LIBKRUN_GUEST_READ");
  if (rd && root_path_seen[0]) {
    char list[4096];
    snprintf(list, sizeof list, "%s", rd);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      char path[8192], buf[4096];
      snprintf(path, sizeof path, "%s/%s", root_path_seen, tok);
      FILE *g = fopen(path, "r");
      size_t n = g ? fread(buf, 1, sizeof buf - 1, g) : 0;
      buf[n] = 0;
      if (g) fclose(g);
      REC("guest_read", put_str(f_, tok); fputs(", content=", f_); if (g) put_str(f_, buf); else fputs("MISSING", f_));
    }
  }
}

int32_t krun_start_enter(uint32_t ctx_id) {
  const char *mode = getenv("STUB_LIBKRUN_ENTER");
  if (!mode) mode = "exit:0";
  REC("krun_start_enter", fprintf(f_, "ctx_id=%" PRIu32 ", mode=", ctx_id); put_str(f_, mode));
  if (strncmp(mode, "return:", 7) == 0) return (int32_t)strtol(mode + 7, NULL, 10);
  guest_effects();
  if (strcmp(mode, "pause") == 0) {
    for (;;) pause();
  }
  int code = strncmp(mode, "exit:", 5) == 0 ? (int)strtol(mode + 5, NULL, 10) : 0;
  /* Like the real VMM: the process ends with the workload's exit code. */
  exit(code);
}

/**
 * A reader that stops early (`monocore status --json | head -1`) closes the CLI's
 * stdout, and the next write fails with EPIPE. Other programs die of SIGPIPE there;
 * Node ignores that signal and reports the failure as an 'error' event on the stream,
 * which, with no listener, crashes the CLI with a stack trace.
 *
 * So a closed stdout or stderr ends the command quietly instead: whatever is still
 * to be written is dropped, a command that runs until it is told to stop (`logs -f`,
 * `status --watch`, `run`) is told so through its SIGTERM handler, exactly as a
 * `kill` would tell it, and the process exits with the command's own exit status
 * (0 for `--help`). Any other error of the streams stays an error.
 */
export function endQuietlyOnClosedOutput(): void {
  let told = false;
  const onError = (err: NodeJS.ErrnoException): void => {
    // ERR_STREAM_DESTROYED: a write after the EPIPE, on the stream Node has destroyed.
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
    if (told) return;
    told = true;
    process.emit('SIGTERM', 'SIGTERM');
  };
  process.stdout.on('error', onError);
  process.stderr.on('error', onError);
}

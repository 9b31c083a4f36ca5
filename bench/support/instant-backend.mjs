// NOT A SANDBOX — benchmark only. A scheduling-only backend for bench/orch-up.mjs:
// it boots nothing and runs nothing (no process, no VM, no guest). start() reports
// "started" at once and the "VM" lives until stopped, so what the benchmark times
// is the scheduler (flows, gates, state, events), not 200 TCG boots. It is never
// part of the product: the worker only gets it through startWorker({ backend }).
let nextPid = 1_000_000;

class InstantHandle {
  #resolve;
  #exit;
  constructor(id) {
    this.id = id;
    this.pid = nextPid++;
    this.started = Promise.resolve();
    this.#exit = new Promise((r) => (this.#resolve = r));
  }
  wait() {
    return this.#exit;
  }
  async stop() {
    this.#resolve({ exitCode: 0, reason: 'stopped' });
    return this.#exit;
  }
  async kill() {
    this.#resolve({ exitCode: null, reason: 'killed' });
    return this.#exit;
  }
}

export class InstantBackend {
  name = 'instant';
  async available() {
    return { available: true, accel: 'none', detail: 'NOT A SANDBOX: benchmark-only scheduling backend' };
  }
  async start(spec) {
    return new InstantHandle(spec.id);
  }
}

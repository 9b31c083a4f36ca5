/**
 * Every numeric bound of monocore.toml in one place, so the schema, the checks,
 * the README reference and the tests agree. Why each bound exists is noted.
 */
export const ConfigLimits = {
  /** Service and group names are DNS labels (RFC 1123): they become hostnames, Redis keys and directory names. */
  nameMaxLength: 63,
  /** vCPUs per service; 64 is past any host this runs on and keeps typos like 1000 out. */
  cpusMin: 1,
  cpusMax: 64,
  cpusDefault: 1,
  /** RAM in MiB; below 64 MiB a Linux guest does not boot reliably, above 1 TiB is a typo. */
  ramMin: 64,
  ramMax: 1_048_576,
  ramDefault: 1024,
  /** The seed's limit: the longest depends_on chain may hold 32 services. */
  maxDependencyChain: 32,
  /**
   * Size of a service's writable disk in MiB (sparse: blocks are used as the guest writes).
   * Below 64 MiB ext4's journal and metadata leave too little room; 1 TiB is a typo.
   */
  diskMin: 64,
  diskMax: 1_048_576,
  diskDefault: 4096,
  /** Restart budget per service; beyond 100 a crash loop is just burning CPU. */
  maxRestartsMin: 0,
  maxRestartsMax: 100,
  maxRestartsDefault: 5,
  /** Ports, both host and guest side. */
  portMin: 1,
  portMax: 65535,
  /** A command, argument, env value or path longer than this is a mistake (and a denial of service on Redis). */
  maxStringLength: 4096,
  /** Upper bound on list lengths (args, envs, volumes, depends_on). */
  maxListLength: 1024,
} as const;

export const RESTART_POLICIES = ['on-failure', 'always', 'no'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];

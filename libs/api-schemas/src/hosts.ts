import { z } from 'zod';

/** One worker host as GET /hosts shows it (the engine's HostCapacity plus the heartbeat's age). */
export const HostStatusSchema = z
  .object({
    id: z.string().describe('host id (MONOCORE_HOST_ID; queues host-<id>, pull-<id>)'),
    alive: z.boolean().describe('its heartbeat is current; a host whose heartbeat expired stays listed until the reaper removes it'),
    version: z.string().optional().describe('monocore release of the worker'),
    backends: z.array(z.string()).describe('hypervisor backend in use, e.g. ["qemu"]'),
    accel: z.string().optional().describe('acceleration the backend really uses after its boot probe: kvm, hvf or tcg'),
    backendDetail: z.string().optional().describe('which backend and acceleration the host runs and why, in the backend\'s words (e.g. why KVM was not used), kernel'),
    cpus: z.number().describe('vCPUs the host offers to the scheduler'),
    ramMib: z.number().describe('guest memory the host offers, MiB'),
    usedCpus: z.number().describe('vCPUs of the services placed on it'),
    usedRamMib: z.number(),
    freeCpus: z.number(),
    freeRamMib: z.number(),
    spares: z
      .object({ count: z.number(), ramMib: z.number() })
      .optional()
      .describe('sandbox restores ready ahead of the next create (MONOCORE_SPARES) and their guest RAM, resident while they wait; not in usedRamMib (a start that needs the room discards them)'),
    allocations: z.record(z.string(), z.object({ cpus: z.number(), ramMib: z.number() })).describe('service name → its reservation'),
    startedAt: z.string().optional().describe('when the worker process registered'),
    pid: z.number().optional(),
    lastHeartbeatAt: z.string().optional().describe("last heartbeat, ISO time by the host's clock"),
    heartbeatAgeMs: z.number().optional().describe('milliseconds since lastHeartbeatAt when the API answered'),
  })
  .meta({ id: 'HostStatus' });
export type HostStatus = z.infer<typeof HostStatusSchema>;

export const HostsResponseSchema = z.object({ hosts: z.array(HostStatusSchema) }).meta({ id: 'HostsResponse' });
export type HostsResponse = z.infer<typeof HostsResponseSchema>;

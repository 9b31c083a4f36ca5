import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernelCmdline, launchArgv, machineShape, memMergeFromEnv, qemuArgs, qemuCaps, qemuOptValue, type QemuMachine } from './qemu-args.js';

const machine = (over: Partial<QemuMachine> = {}): QemuMachine => ({
  accel: 'tcg',
  cpus: 2,
  ramMib: 300,
  kernel: '/k/vmlinux',
  initrd: '/k/initramfs-abc.cpio',
  tscKhz: 2899998,
  consoleSocket: '/run/x/console.sock',
  image: { fds: [3], path: '/images/abc/block-erofs-1/rootfs.erofs' },
  disk: { fds: [4, 5], path: '/state/web/upper.ext4' },
  serialPorts: [
    { id: 'ctl', name: 'monocore.control', socket: '/run/x/control.sock' },
    { id: 'out', name: 'monocore.stdout', socket: '/run/x/stdout.sock' },
    { id: 'err', name: 'monocore.stderr', socket: '/run/x/stderr.sock' },
  ],
  volumes: [],
  nics: [],
  ...over,
});

/** The value after each occurrence of `flag`. */
function values(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));
}

/** The single value of `flag` (fails if it appears not exactly once). */
function value(args: string[], flag: string): string {
  const v = values(args, flag);
  assert.equal(v.length, 1, `${flag} appears ${v.length} times in ${args.join(' ')}`);
  return v[0]!;
}

test('qemuArgs: machine, accelerator, cpu, memory and the boot path', () => {
  const tcg = qemuArgs(machine());
  assert.equal(value(tcg, '-M'), 'microvm,x-option-roms=off,rtc=on,isa-serial=on,mem-merge=off');
  assert.equal(value(tcg, '-accel'), 'tcg,thread=single');
  assert.equal(value(tcg, '-cpu'), 'max,erms=off', 'TCG: max without ERMS (rep movsb crawls under TCG)');
  assert.equal(value(tcg, '-m'), '300');
  assert.equal(value(tcg, '-smp'), '2');
  assert.equal(value(tcg, '-kernel'), '/k/vmlinux');
  assert.equal(value(tcg, '-initrd'), '/k/initramfs-abc.cpio');
  for (const flag of ['-nodefaults', '-no-user-config', '-no-reboot']) assert.ok(tcg.includes(flag), flag);
  assert.equal(value(tcg, '-display'), 'none');
  assert.equal(value(tcg, '-monitor'), 'none');
  const kvm = qemuArgs(machine({ accel: 'kvm' }));
  assert.equal(value(kvm, '-accel'), 'kvm');
  assert.equal(value(kvm, '-cpu'), 'host');
  assert.equal(value(qemuArgs(machine({ accel: 'hvf' })), '-accel'), 'hvf');
});

test('qemuArgs: guest RAM is not mergeable by KSM unless asked (memMerge); machineShape is the same either way', () => {
  assert.match(value(qemuArgs(machine()), '-M'), /,mem-merge=off$/);
  assert.match(value(qemuArgs(machine({ memMerge: false })), '-M'), /,mem-merge=off$/);
  const merged = value(qemuArgs(machine({ memMerge: true })), '-M');
  assert.equal(merged, 'microvm,x-option-roms=off,rtc=on,isa-serial=on', 'QEMU\'s default (mem-merge=on)');
  // A template saved by either restores into the other: the stream does not carry the madvise.
  assert.deepEqual(machineShape(machine({ memMerge: true })), machineShape(machine()));
  assert.ok(!machineShape(machine()).some((a) => a.includes('mem-merge')), 'hashes of templates saved before mem-merge=off stay valid');
});

test('memMergeFromEnv: off unless MONOCORE_MEM_MERGE=1; anything else is refused', () => {
  assert.equal(memMergeFromEnv({}), false);
  assert.equal(memMergeFromEnv({ MONOCORE_MEM_MERGE: '' }), false);
  assert.equal(memMergeFromEnv({ MONOCORE_MEM_MERGE: '0' }), false);
  assert.equal(memMergeFromEnv({ MONOCORE_MEM_MERGE: '1' }), true);
  assert.throws(() => memMergeFromEnv({ MONOCORE_MEM_MERGE: 'yes' }), /MONOCORE_MEM_MERGE must be 1/);
});

test('qemuArgs: QEMU runs under its seccomp sandbox', () => {
  assert.equal(value(qemuArgs(machine()), '-sandbox'), 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
});

test('kernelCmdline: console, panic/reboot ends the VM, the TCG hang avoidances, tsc_early_khz only when known', () => {
  const withTsc = kernelCmdline(2899998).split(' ');
  assert.deepEqual(withTsc, ['console=ttyS0', 'panic=-1', 'reboot=t', 'quiet', 'no_timer_check', 'tsc_early_khz=2899998', 'rdinit=/init']);
  assert.ok(!kernelCmdline(undefined).includes('tsc_early_khz'));
  assert.equal(value(qemuArgs(machine({ tscKhz: 1234 })), '-append'), kernelCmdline(1234));
});

test('qemuArgs: the console is a socket chardev on ttyS0, never a file', () => {
  const args = qemuArgs(machine());
  assert.ok(values(args, '-chardev').includes('socket,id=con,path=/run/x/console.sock'));
  assert.equal(value(args, '-serial'), 'chardev:con');
});

test('qemuArgs: the image is a read-only virtio-blk drive on an inherited fd, found by its serial; no 9p share but volumes', () => {
  const args = qemuArgs(machine());
  assert.deepEqual(values(args, '-add-fd'), [
    'fd=3,set=1,opaque=/images/abc/block-erofs-1/rootfs.erofs',
    'fd=4,set=2,opaque=/state/web/upper.ext4',
    'fd=5,set=2,opaque=/state/web/upper.ext4',
  ]);
  assert.equal(values(args, '-drive')[0], 'file=/dev/fdset/1,format=raw,if=none,id=image,read-only=on');
  assert.ok(values(args, '-device').includes('virtio-blk-device,drive=image,serial=image'));
  assert.deepEqual(values(args, '-fsdev'), [], 'no 9p share without volumes');
  assert.ok(!values(args, '-device').some((d) => d.startsWith('virtio-9p')));
  // A comma in a path cannot end QEMU's option: it is doubled.
  assert.equal(qemuOptValue('/a,b/c'), '/a,,b/c');
  assert.equal(values(qemuArgs(machine({ image: { fds: [5], path: '/h,x/rootfs.erofs' } })), '-add-fd')[0], 'fd=5,set=1,opaque=/h,,x/rootfs.erofs');
});

test('qemuArgs: the writable disk is a raw virtio-blk drive on an inherited fd without cache=unsafe; the probe has no drives', () => {
  const args = qemuArgs(machine());
  assert.equal(values(args, '-drive')[1], 'file=/dev/fdset/2,format=raw,if=none,id=upper,discard=unmap,file.locking=off');
  assert.ok(values(args, '-device').includes('virtio-blk-device,drive=upper,serial=upper'));
  const probe = qemuArgs(machine({ image: undefined, disk: undefined }));
  assert.deepEqual(values(probe, '-drive'), []);
  assert.deepEqual(values(probe, '-add-fd'), []);
  assert.ok(!values(probe, '-device').some((d) => d.startsWith('virtio-blk-device')));
});

test('qemuArgs: under TCG the translated-code buffer is capped when asked; KVM has none', () => {
  assert.equal(value(qemuArgs(machine({ tcgCodeMib: 64 })), '-accel'), 'tcg,thread=single,tb-size=64');
  assert.equal(value(qemuArgs(machine()), '-accel'), 'tcg,thread=single');
  assert.equal(value(qemuArgs(machine({ accel: 'kvm', tcgCodeMib: 64 })), '-accel'), 'kvm');
});

test('qemuArgs: the agent lane is a raw virtio-blk drive on an inherited fd the guest finds by its serial; none for the probe', () => {
  const args = qemuArgs(machine({ lane: { fds: [6, 7], path: '/run/vm/lane.img' } }));
  assert.deepEqual(values(args, '-add-fd').slice(-2), ['fd=6,set=3,opaque=/run/vm/lane.img', 'fd=7,set=3,opaque=/run/vm/lane.img']);
  assert.ok(values(args, '-drive').includes('file=/dev/fdset/3,format=raw,if=none,id=lane,file.locking=off'));
  assert.ok(values(args, '-device').includes('virtio-blk-device,drive=lane,serial=monocore-lane'));
  assert.ok(!values(qemuArgs(machine({ image: undefined, disk: undefined })), '-drive').some((d) => d.includes('id=lane')));
});

test('qemuArgs: device order is fixed (image, upper, lane, serial ports, volumes, NICs): a snapshot restores only into the same layout', () => {
  const args = qemuArgs(machine({
    lane: { fds: [6, 7], path: '/run/vm/lane.img' },
    serialPorts: [{ id: 'ctl', name: 'monocore.control', socket: '/run/x/control.sock' }],
    volumes: [{ tag: 'vol0', host: '/data', readOnly: false }],
    nics: [{ kind: 'group', fd: 5, mac: '52:54:0a:58:00:02' }],
  }));
  assert.deepEqual(values(args, '-device'), [
    'virtio-blk-device,drive=image,serial=image',
    'virtio-blk-device,drive=upper,serial=upper',
    'virtio-blk-device,drive=lane,serial=monocore-lane',
    'virtio-serial-device,max_ports=2',
    'virtserialport,chardev=ctl,name=monocore.control',
    'virtio-9p-device,fsdev=vol0,mount_tag=vol0',
    'virtio-net-device,netdev=grp,mac=52:54:0a:58:00:02',
  ]);
});

test('qemuArgs: each virtio-serial port is a socket chardev and a named virtserialport; max_ports leaves port 0 free', () => {
  const args = qemuArgs(machine());
  const devices = values(args, '-device');
  const chardevs = values(args, '-chardev');
  assert.ok(devices.includes('virtio-serial-device,max_ports=4'));
  for (const [id, name, sock] of [
    ['ctl', 'monocore.control', 'control'],
    ['out', 'monocore.stdout', 'stdout'],
    ['err', 'monocore.stderr', 'stderr'],
  ]) {
    assert.ok(chardevs.includes(`socket,id=${id},path=/run/x/${sock}.sock`), id);
    assert.ok(devices.includes(`virtserialport,chardev=${id},name=${name}`), name);
  }
  // A fourth port needs max_ports=5 (QEMU reserves port 0 for a console).
  const four = qemuArgs(machine({ serialPorts: [...machine().serialPorts, { id: 'agt', name: 'monocore.agent', socket: '/run/x/agent.sock' }] }));
  assert.ok(values(four, '-device').includes('virtio-serial-device,max_ports=5'));
  assert.ok(values(four, '-device').includes('virtserialport,chardev=agt,name=monocore.agent'));
});

test('qemuArgs: volumes are mapped-xattr 9p shares tagged volN, read-only when asked', () => {
  const args = qemuArgs(machine({ volumes: [{ tag: 'vol0', host: '/data', readOnly: false }, { tag: 'vol1', host: '/conf', readOnly: true }] }));
  const fsdevs = values(args, '-fsdev');
  assert.ok(fsdevs.includes('local,id=vol0,path=/data,security_model=mapped-xattr'));
  assert.equal(values(qemuArgs(machine({ volumes: [{ tag: 'vol0', host: '/a,b', readOnly: false }] })), '-fsdev')[0], 'local,id=vol0,path=/a,,b,security_model=mapped-xattr');
  assert.ok(fsdevs.includes('local,id=vol1,path=/conf,security_model=mapped-xattr,readonly=on'));
  const devices = values(args, '-device');
  assert.ok(devices.includes('virtio-9p-device,fsdev=vol0,mount_tag=vol0'));
  assert.ok(devices.includes('virtio-9p-device,fsdev=vol1,mount_tag=vol1'));
});

test('qemuArgs: each netdev kind — group and egress sockets on inherited fds, port-forward through restricted slirp', () => {
  assert.deepEqual(values(qemuArgs(machine()), '-netdev'), [], 'no NIC: loopback only');
  const args = qemuArgs(
    machine({
      nics: [
        { kind: 'group', fd: 3, mac: '52:54:0a:58:00:02' },
        { kind: 'egress', fd: 4, mac: '52:56:64:7f:00:02' },
        { kind: 'port-forward', mac: '52:55:0a:00:02:0f', forwards: [{ bindAddress: '127.0.0.1', host: 8080, guest: 80 }, { bindAddress: '0.0.0.0', host: 8443, guest: 443 }] },
      ],
    }),
  );
  assert.deepEqual(values(args, '-netdev'), [
    'socket,id=grp,fd=3',
    'socket,id=egr,fd=4',
    'user,id=pf,restrict=on,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:0.0.0.0:8443-:443',
  ]);
  const nets = values(args, '-device').filter((d) => d.startsWith('virtio-net-device'));
  assert.deepEqual(nets, [
    'virtio-net-device,netdev=grp,mac=52:54:0a:58:00:02',
    'virtio-net-device,netdev=egr,mac=52:56:64:7f:00:02',
    'virtio-net-device,netdev=pf,mac=52:55:0a:00:02:0f',
  ]);
});

test('qemuCaps: no capability without volumes; with volumes only dac_override and fowner', () => {
  assert.equal(qemuCaps(false), '-all');
  assert.equal(qemuCaps(true), '-all,+dac_override,+fowner');
});

test('launchArgv: setpriv ties QEMU to its supervisor with the given capabilities; as another uid they are its ambient ones', () => {
  const args = ['-M', 'microvm'];
  assert.deepEqual(launchArgv({ qemu: 'qemu-system-x86_64', caps: '-all', args }), [
    'setpriv', '--pdeathsig', 'KILL', '--no-new-privs', '--bounding-set', '-all', '--', 'qemu-system-x86_64', '-M', 'microvm',
  ]);
  const caps = qemuCaps(true);
  const asUid = launchArgv({ prefix: ['ip', 'netns', 'exec', 'ns1'], qemu: 'qemu', uid: 0x70000005, caps, args });
  assert.deepEqual(asUid.slice(0, 4), ['ip', 'netns', 'exec', 'ns1']);
  const setpriv = asUid.slice(4, asUid.indexOf('--'));
  assert.equal(value(setpriv, '--reuid'), String(0x70000005));
  assert.equal(value(setpriv, '--regid'), String(0x70000005));
  assert.ok(setpriv.includes('--clear-groups'));
  assert.equal(value(setpriv, '--bounding-set'), caps);
  assert.equal(value(setpriv, '--inh-caps'), caps);
  assert.equal(value(setpriv, '--ambient-caps'), caps);
  assert.deepEqual(asUid.slice(asUid.indexOf('--') + 1), ['qemu', '-M', 'microvm']);
  // Under KVM it keeps /dev/kvm's group instead of none.
  const kvm = launchArgv({ qemu: 'qemu', uid: 0x70000005, groups: [108], caps: '-all', args });
  assert.equal(value(kvm, '--groups'), '108');
  assert.ok(!kvm.includes('--clear-groups'));
});

test('qemuArgs: the QMP monitor and a restore (-S -incoming fd:N) come last; machineShape leaves out what differs between two starts of one shape', () => {
  const base = machine({ kernel: '/proc/self/fd/4' });
  const args = qemuArgs({ ...base, qmpSocket: '/run/x/qmp.sock', incomingFd: 9 });
  assert.deepEqual(args.slice(-7), ['-chardev', 'socket,id=qmp,path=/run/x/qmp.sock', '-mon', 'chardev=qmp,mode=control', '-S', '-incoming', 'fd:9']);
  // Other fds, paths, sockets: the same shape.
  const other = {
    ...base,
    kernel: '/proc/self/fd/17',
    consoleSocket: '/tmp/other/console.sock',
    serialPorts: base.serialPorts.map((p) => ({ ...p, socket: `/tmp/other/${p.id}.sock` })),
    qmpSocket: '/tmp/other/qmp.sock',
  };
  assert.deepEqual(machineShape(other), machineShape(base));
  // The backend hashes boot files as this placeholder (a restore gets a stub kernel, a boot the real one).
  assert.deepEqual(machineShape({ ...base, kernel: '/proc/self/fd/N', initrd: '/proc/self/fd/N' }), machineShape({ ...base, initrd: '/proc/self/fd/5' }));
  assert.ok(!machineShape(other).some((a) => a.includes('qmp') || a.includes('incoming')));
  // Anything the guest sees: another shape.
  assert.notDeepEqual(machineShape({ ...base, ramMib: base.ramMib + 64 }), machineShape(base));
  assert.notDeepEqual(machineShape({ ...base, cpus: base.cpus + 1 }), machineShape(base));
  assert.notDeepEqual(machineShape({ ...base, nics: [] }), machineShape({ ...base, nics: [{ kind: 'egress', fd: 3, mac: '52:56:64:7f:00:02' }] }));
  // Group members differ only by their address-derived MAC (REFRESH gives a restored member its own); the NIC kind counts.
  assert.deepEqual(machineShape({ ...base, nics: [{ kind: 'group', fd: 3, mac: '52:54:0a:58:00:02' }] }), machineShape({ ...base, nics: [{ kind: 'group', fd: 7, mac: '52:54:0a:58:00:09' }] }));
  assert.notDeepEqual(machineShape({ ...base, nics: [{ kind: 'group', fd: 3, mac: '52:54:0a:58:00:02' }] }), machineShape({ ...base, nics: [{ kind: 'egress', fd: 3, mac: '52:56:64:7f:00:02' }] }));
});

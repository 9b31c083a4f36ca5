// Public surface of the rootfs domain: list exports by name.
export {};

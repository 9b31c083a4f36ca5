// Public surface of the vm domain: list exports by name.
export {};

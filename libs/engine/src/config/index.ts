// Public surface of the config domain: list exports by name.
export {};

// Public surface of the state domain: list exports by name.
export {};

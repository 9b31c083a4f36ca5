// Public surface of the plan domain: list exports by name.
export {};

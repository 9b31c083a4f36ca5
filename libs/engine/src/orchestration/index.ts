// Public surface of the orchestration domain: list exports by name.
export {};

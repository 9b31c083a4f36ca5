// Public surface of the oci domain: list exports by name.
export {};

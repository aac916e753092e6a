"""Evidence types: one package per TEE, each with format, verify and claims modules."""

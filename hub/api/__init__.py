"""The HTTP API (contract section 5): dependencies, error mapping and routes per resource."""

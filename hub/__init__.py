"""SMSA hub: the service measurement and settlement agent (ingest, ledger, control, API)."""

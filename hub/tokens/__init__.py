"""Offline top-up tokens (contract section 7, docs/tokens.md): vend, settle once, cancel."""

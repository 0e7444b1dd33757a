"""Revoking an API key (``DELETE /api-keys/{id}`` and ``smsa-hub revoke-key``), audited.

A key already revoked stays as it is and records nothing; a live one is revoked with an
``api_key_revoked`` event (``hub.audit``) naming who revoked it.
"""

from __future__ import annotations

from sqlmodel import Session

from hub.audit import KEY_REVOKED, record_change
from hub.keys import find_by_id_or_key, revoke_key


def revoke(session: Session, key_or_id: str, *, by: int | None) -> int:
    """Revoke the key (its id, or the key itself) in the caller's transaction; its id.
    NotFoundError for no such key. ``by``: the revoking API key's id (None: the command line)."""
    row = find_by_id_or_key(session, key_or_id)
    live = row.revoked_at is None
    key_id = revoke_key(session, key_or_id)
    if live:
        changed = {"revoked": {"from": False, "to": True}}
        record_change(session, KEY_REVOKED, key_id=by, subject=("api_key", str(key_id)),
                      changed=changed)  # fmt: skip
    return key_id

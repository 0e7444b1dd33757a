"""The protocol's one error root."""


class ProtocolError(ValueError):
    """A payload that does not satisfy the contract; ``reason`` is one line for a quarantine."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

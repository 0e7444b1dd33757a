"""The hub's application layer: the use cases the API (and the scheduler) call.

Top-ups (``topups``), payment-provider callbacks (``payments``), operator disconnect and
reconnect (``operator``), a customer's notifications (``notifications``) and the scheduled
jobs (``jobs``). Each takes the ``Runtime`` built
once by the composition root (``hub.compose``) and plain values, and returns plain values
(dataclasses of ``hub.ledger`` or its own); it never imports ``hub.api``: routes parse HTTP
into these arguments and build their response schemas from what comes back.
"""

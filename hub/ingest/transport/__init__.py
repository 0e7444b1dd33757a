"""How ingest's processes reach the broker and each other; no settling here.

``mqtt`` and ``paho_bulk``: the MQTT client. ``pump``: the process that runs it, and
``pump_link``, the hub's handle on it. ``settler_link``: the hub's handle on a settling process
(``hub.ingest.settler``) and the sharding rule. ``child``: the socket and restart logic both
links share. ``messages``: every message the processes exchange.
"""

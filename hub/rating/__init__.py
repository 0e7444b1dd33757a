"""The hub's glue around protocol rating: which tariff version applies, a meter's carry and
month-to-date state, who pays a meter's charge, generation mixes and provider selection.

Everything here is pure except what reads the database: ``tariffs``, ``standing`` and the
sharing-user reads of ``payers`` (``load_sharers``, ``shared_meters``).
"""

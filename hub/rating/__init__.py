"""The hub's glue around protocol rating: which tariff version applies, a meter's carry and
month-to-date state, who pays a meter's charge, generation mixes, provider selection and how
each interval of a meter is priced (``pricing``: its tariff, or a selection, from a date).

Everything here is pure except what reads the database: ``tariffs``, ``standing``,
``pricing_store`` and the sharing-user reads of ``payers`` (``load_sharers``,
``shared_meters``).
"""

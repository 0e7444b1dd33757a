"""The hub's glue around protocol rating: which tariff version applies, a meter's carry and
month-to-date state, who pays a meter's charge, generation mixes and provider selection.

Everything here except ``tariffs`` (which reads the database) is pure.
"""

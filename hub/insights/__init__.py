"""Insights (issue 19): what a customer's usage, profile and payments say, and what to offer.

Everything is read in one place (``reads``), analysed by pure functions over plain data
(``series``, ``profile``, ``peers``, ``rerate``, ``anomalies``, ``payments``, ``offers``,
``rules``), and presented by ``service`` (the API's answer, offers recorded once, anomalies
raised as operator events) and ``report`` (the CSV of ``smsa-hub insights``). README.md beside
this file has the rules and thresholds.
"""

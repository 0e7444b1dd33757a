"""The distribution's own package: the console commands' entry points (``smsa.cli``)."""

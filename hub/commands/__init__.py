"""Commands to meters: the durable table (``store``) and its publisher (``dispatcher``)."""

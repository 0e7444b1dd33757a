"""Credit control: credit state and signed commands to gateways (rules in their own modules)."""

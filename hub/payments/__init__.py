"""Payments allocated to the tiers (issue 18, contract section 6): the allocation policy,
paper remittances, bill-payment networks and third-party verification. See README.md."""

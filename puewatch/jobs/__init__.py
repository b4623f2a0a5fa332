"""Energy per job and per tenant from the agents' job ledger (issue 16): `puewatch jobs`."""

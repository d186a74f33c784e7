"""Balances, supplies and holders of a tenant's tokens, read from the chain mirror."""

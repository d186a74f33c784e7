"""PERS: a multi-tenant loyalty platform whose ledger is an EVM chain."""

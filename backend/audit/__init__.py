"""The auditor's view: the chain mirror's events joined to the books, live proofs from the node, and
the check that the mirror equals the chain."""

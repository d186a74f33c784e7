"""The relay: token operations accepted over HTTP (or from other domains) and executed on chain."""

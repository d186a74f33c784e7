"""Tokens: see router.py for the HTTP surface."""

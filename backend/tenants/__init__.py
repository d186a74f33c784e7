"""Tenants: see router.py for the HTTP surface."""

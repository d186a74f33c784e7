"""Tenant analytics: claims, tokens moved, redeems and gas over a time range, in time buckets."""

"""Webhooks: signed, retried deliveries of platform events to the tenant's receivers."""

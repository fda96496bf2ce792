"""Outgoing webhooks: registrations, the outbox of events, and their signed delivery."""

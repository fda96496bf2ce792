"""Outgoing webhooks: the /v1/webhooks API, the admin page, the delivery worker, the CLI."""

"""Payments: the Xendit gateway, payment requests, the webhook and the confirmation event."""

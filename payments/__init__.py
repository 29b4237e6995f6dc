"""The Stripe adapter: the payment gateway, event translation and the webhook server."""

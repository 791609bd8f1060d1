"""Gateways on NATS with JetStream (PROTOCOL §18): the bridge beside each gateway, and the
clients that reach gateways through NATS."""

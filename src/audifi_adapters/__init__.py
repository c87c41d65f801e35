"""Adapters for AudiFi's ports: PostgreSQL, Redis, chain, Stripe, IPFS, mail, and in-memory ones."""

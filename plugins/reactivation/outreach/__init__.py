"""Outreach: cadences, contact rules, templates, batches, approval, providers and the outbox."""

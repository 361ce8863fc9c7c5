"""Webhook receiver: SendGrid's signed Event Webhook and Twilio's status callbacks and replies.

``schema`` (tables), ``keywords`` (STOP/START/HELP), ``handlers`` (warehouse writes), ``app``
(the Starlette app) and ``server`` (``reactivation webhooks serve``). Kept import-light on purpose:
``reactivation.warehouse`` imports ``schema`` without pulling in Starlette or the provider SDKs.
"""

"""Tables the webhook receiver writes: the event log, message status, replies, the staff queue, counters.

Nothing here holds a raw provider payload. SendGrid events carry the recipient's address and
Twilio posts carry phone numbers and the text of replies, so only non-PHI fields are kept
(ids, event types, times, error codes) plus a digest of those fields. A reply's text is kept
only when staff have to read it ("other" replies, in ``ops.staff_queue``). A reply's sender is
kept as a keyed digest (``sender_key``), enough to recognise a repeated STOP from the same
number without storing the number.
"""

from __future__ import annotations

WEBHOOK_DDL: list[str] = [
    "create schema if not exists ops",
    # Append-only log of every provider event accepted (signature and timestamp checked).
    # event_id is SendGrid's sg_event_id, or "<MessageSid>:<status>" for Twilio: the dedupe key.
    """create table if not exists ops.provider_events (
    id bigserial primary key,
    event_id text not null unique,
    provider text not null check (provider in ('sendgrid', 'twilio')),
    event_type text not null,
    provider_message_id text,
    outreach_key text,
    error_code text,
    received_at timestamptz not null default now(),
    occurred_at timestamptz,
    payload_digest text not null
)""",
    "create index if not exists provider_events_outreach_idx on ops.provider_events (outreach_key)",
    "create index if not exists provider_events_message_idx on ops.provider_events (provider_message_id)",
    # Append-only means no update and no delete, enforced by the database rather than by convention.
    """create or replace function ops.provider_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'ops.provider_events is append-only';
end
$$""",
    """do $$
begin
    if not exists (select 1 from pg_trigger where tgname = 'provider_events_append_only'
                   and tgrelid = 'ops.provider_events'::regclass) then
        create trigger provider_events_append_only before update or delete on ops.provider_events
            for each row execute function ops.provider_events_append_only();
    end if;
end
$$""",
    # Latest status per outreach key. Only ever moves to a higher rank: a late 'processed' or 'sent'
    # never undoes 'delivered', and terminal outcomes (rank 9) are final.
    """create table if not exists ops.message_status (
    outreach_key text primary key,
    provider text not null,
    provider_message_id text,
    status text not null,
    status_rank integer not null,
    error_code text,
    occurred_at timestamptz,
    updated_at timestamptz not null default now()
)""",
    # Replies. The body is never stored here; 'other' replies go to ops.staff_queue with their text.
    # person_id is the person the reply is attributed to (null when the number matches nobody or is
    # ambiguous); person_ids lists everyone sharing the number (all of them are opted out on STOP).
    """create table if not exists ops.inbound_messages (
    id bigserial primary key,
    provider text not null default 'twilio',
    provider_message_id text not null unique,
    person_id text,
    person_ids text[] not null default '{}',
    location_id text,
    channel text not null default 'sms',
    keyword text not null check (keyword in ('stop', 'start', 'help', 'other')),
    keyword_match text check (keyword_match in ('exact', 'contains')),
    sender_key text not null,
    reply text not null check (reply in ('stop_confirmation', 'start_confirmation', 'help', 'none')),
    received_at timestamptz not null default now()
)""",
    "create index if not exists inbound_messages_sender_idx on ops.inbound_messages (sender_key, received_at)",
    # How the reply reached us: the receiver's webhook, or the events DAG's catch-up, which lists from
    # the provider the replies the receiver missed (their received_at is then the provider's time).
    """do $$
begin
    if not exists (select 1 from information_schema.columns
                   where table_schema = 'ops' and table_name = 'inbound_messages' and column_name = 'source') then
        alter table ops.inbound_messages add column source text not null default 'webhook'
            check (source in ('webhook', 'catch_up'));
    end if;
end
$$""",
    # What staff read and work: replies that are not a keyword, with their text.
    """create table if not exists ops.staff_queue (
    id bigserial primary key,
    inbound_message_id bigint references ops.inbound_messages (id),
    person_id text,
    person_ids text[] not null default '{}',
    location_id text,
    channel text not null,
    body text not null,
    received_at timestamptz not null default now(),
    handled_at timestamptz,
    handled_by text
)""",
    "create index if not exists staff_queue_open_idx on ops.staff_queue (location_id, received_at) "
    "where handled_at is null",
    # Running totals for /metrics and alerting: accepted, duplicate, bad_signature, stale_timestamp,
    # malformed, unknown_message, opt_out, opt_in, staff_queued; what the events DAG's catch-up
    # recorded instead of the receiver as catch_up.<name> (see handlers.SOURCES).
    """create table if not exists ops.webhook_counters (
    name text primary key,
    value bigint not null default 0,
    updated_at timestamptz not null default now()
)""",
]


def ensure_webhook_schema(url: str) -> None:
    """Create the pipeline's schema, then the webhook tables (idempotent).

    Stand-in until ``reactivation.warehouse.ensure_schema`` runs ``WEBHOOK_DDL`` itself; calling
    both is harmless because every statement is idempotent.
    """
    from reactivation.warehouse import connect, ensure_schema

    ensure_schema(url)
    with connect(url) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext('reactivation.ensure_webhook_schema'))")
        for statement in WEBHOOK_DDL:
            conn.execute(statement)

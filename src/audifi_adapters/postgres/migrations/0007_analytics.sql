-- Analytics and notifications: client and server events in monthly partitions (created at
-- startup; anything outside them lands in the default partition), exact 7-day dedupe on the
-- event id, dirty buckets, hourly and daily summaries per master and per artist; the per-user
-- inbox; the Redis Streams relay's checkpoint and the events Redis refused while it was down.

CREATE TABLE analytics_events (
    id            text        NOT NULL,
    type          text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL,
    master_id     text,
    user_id       text,
    anonymous_id  text,
    quantity      bigint,          -- share.transferred: shares sold
    amount        bigint,          -- payment.succeeded: smallest currency unit
    currency      text,
    properties    jsonb
) PARTITION BY RANGE (occurred_at);
CREATE INDEX analytics_events_master ON analytics_events (master_id, occurred_at);
CREATE TABLE analytics_events_default PARTITION OF analytics_events DEFAULT;

-- Every id seen in the last 7 days (by arrival, whatever occurredAt says); pruned after that.
CREATE TABLE analytics_event_ids (
    id           text PRIMARY KEY,
    received_at  timestamptz NOT NULL
);
CREATE INDEX analytics_event_ids_received ON analytics_event_ids USING brin (received_at);

-- (master, hour) buckets whose summaries are stale, appended by the ingesting transaction (no
-- unique key: concurrent batches of the same hot bucket never wait on each other's row lock);
-- the aggregator deletes the marks it has seen.
CREATE TABLE analytics_dirty (
    master_id  text        NOT NULL,
    hour       timestamptz NOT NULL
);
CREATE INDEX analytics_dirty_bucket ON analytics_dirty (master_id, hour);

-- master → artist, learned from master.registered.
CREATE TABLE analytics_masters (
    master_id  text PRIMARY KEY,
    artist_id  text NOT NULL
);
CREATE INDEX analytics_masters_artist ON analytics_masters (artist_id);

CREATE TABLE analytics_hourly (
    scope        text        NOT NULL CHECK (scope IN ('master', 'artist')),
    scope_id     text        NOT NULL,
    bucket       timestamptz NOT NULL,
    plays        bigint      NOT NULL DEFAULT 0,
    listeners    bigint      NOT NULL DEFAULT 0,
    votes        bigint      NOT NULL DEFAULT 0,
    shares_sold  bigint      NOT NULL DEFAULT 0,
    revenue      jsonb       NOT NULL DEFAULT '{}',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_id, bucket)
);
CREATE TABLE analytics_daily (LIKE analytics_hourly INCLUDING ALL);

-- Every listener of a (scope, id, UTC day), so a day's unique listeners never need its events again.
CREATE TABLE analytics_day_listeners (
    scope     text        NOT NULL,
    scope_id  text        NOT NULL,
    day       timestamptz NOT NULL,
    listener  text        NOT NULL,
    PRIMARY KEY (scope, scope_id, day, listener)
);

CREATE TABLE notifications (
    id             text        PRIMARY KEY,
    user_id        text        NOT NULL,
    event_id       text        NOT NULL,
    kind           text        NOT NULL,
    title          text        NOT NULL,
    body           text        NOT NULL,
    created_at     timestamptz NOT NULL,
    read_at        timestamptz,
    mail_to        text,
    mail_state     text        NOT NULL DEFAULT 'none'
                   CHECK (mail_state IN ('none', 'pending', 'sending', 'sent', 'failed')),
    mail_attempts  integer     NOT NULL DEFAULT 0,
    UNIQUE (event_id, user_id)
);
CREATE INDEX notifications_inbox ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_mail ON notifications (created_at) WHERE mail_state = 'pending';

CREATE TABLE notification_participants (
    session_id  text NOT NULL,
    user_id     text NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE notification_holders (
    master_id  text   NOT NULL,
    user_id    text   NOT NULL,
    shares     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (master_id, user_id)
);

CREATE TABLE bus_streams (
    stream      text PRIMARY KEY,
    epoch       text,
    checkpoint  timestamptz NOT NULL   -- outbox rows published before this were handled by every group
);

CREATE TABLE bus_unsent (
    seq          bigserial   PRIMARY KEY,
    stream       text        NOT NULL,
    event_id     text        NOT NULL,
    type         text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    data         jsonb       NOT NULL,
    failed_at    timestamptz NOT NULL DEFAULT now()
);

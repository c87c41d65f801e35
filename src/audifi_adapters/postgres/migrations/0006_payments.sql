-- Payments context: gateway customers, checkouts (with the token ids they reserve), per-user
-- limits as conditional counters, webhook events taken (a primary key: each id once), reversals
-- by payment, subscriptions as last fetched (ordered by a ticket), durable tasks.
CREATE TABLE payment_customers (
    user_id      text PRIMARY KEY,
    customer_id  text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL
);

CREATE TABLE payment_checkouts (
    id               text PRIMARY KEY,
    user_id          text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('shares', 'subscription')),
    status           text NOT NULL CHECK (status IN ('creating', 'open', 'processing', 'paid', 'expired',
                                                     'failed', 'unfulfillable')),
    amount           bigint NOT NULL,
    currency         text NOT NULL,
    session_id       text UNIQUE,
    url              text,
    expires_at       timestamptz,
    master_id        text,
    quantity         integer NOT NULL DEFAULT 0,
    token_ids        integer[] NOT NULL DEFAULT '{}',
    plan             text,
    payment_intent   text,
    transfer_job_id  text,
    hold_until       timestamptz,
    reversal         text CHECK (reversal IN ('refund', 'dispute', 'fraud_warning')),
    reversed_at      timestamptz,
    return_job_id    text,
    returned_at      timestamptz,
    settled          boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX payment_checkouts_user_open ON payment_checkouts (user_id, created_at)
    WHERE status IN ('creating', 'open', 'processing');
CREATE INDEX payment_checkouts_expiry ON payment_checkouts (expires_at) WHERE status IN ('open', 'processing');
CREATE INDEX payment_checkouts_creating ON payment_checkouts (created_at) WHERE status = 'creating';
CREATE INDEX payment_checkouts_payment ON payment_checkouts (payment_intent) WHERE payment_intent IS NOT NULL;
CREATE INDEX payment_checkouts_unsettled ON payment_checkouts (id)
    WHERE status = 'paid' AND kind = 'shares' AND NOT settled;

CREATE TABLE payment_open_slots (
    user_id  text PRIMARY KEY,
    open     integer NOT NULL CHECK (open >= 0)
);

CREATE TABLE payment_user_shares (
    user_id    text NOT NULL,
    master_id  text NOT NULL,
    shares     integer NOT NULL CHECK (shares >= 0),
    PRIMARY KEY (user_id, master_id)
);

CREATE TABLE payment_events (
    event_id     text PRIMARY KEY,
    type         text NOT NULL,
    received_at  timestamptz NOT NULL
);

CREATE TABLE payment_reversals (
    payment_intent  text PRIMARY KEY,
    reason          text NOT NULL,
    at              timestamptz NOT NULL
);

CREATE SEQUENCE payment_sync_tickets;

CREATE TABLE payment_subscriptions (
    id                    text PRIMARY KEY,
    user_id               text NOT NULL,
    customer_id           text NOT NULL,
    status                text NOT NULL,
    plan                  text,
    price_id              text,
    current_period_end    timestamptz,
    cancel_at_period_end  boolean NOT NULL,
    ticket                bigint NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX payment_subscriptions_user ON payment_subscriptions (user_id);

CREATE TABLE payment_tasks (
    key           text PRIMARY KEY,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    due_at        timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    gen           bigint NOT NULL DEFAULT 1,
    leased_until  timestamptz,
    last_error    text
);
CREATE INDEX payment_tasks_due ON payment_tasks (due_at);

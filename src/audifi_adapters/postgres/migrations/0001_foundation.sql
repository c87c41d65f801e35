-- Foundation: users and their credentials, wallets, recovery codes; the transactional outbox.


CREATE TABLE users (
    id             text PRIMARY KEY,
    idx            bigint NOT NULL UNIQUE,
    email          text NOT NULL UNIQUE,
    display_name   text NOT NULL,
    roles          text[] NOT NULL DEFAULT ARRAY['fan'],
    artist_name    text,
    artist_status  text NOT NULL DEFAULT 'none' CHECK (artist_status IN ('none', 'pending', 'approved')),
    password_hash  text,
    totp_secret    text,
    totp_enabled   boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL
);
-- user index → custodial address (BIP-44); owned by the column so a TRUNCATE … RESTART IDENTITY resets it
CREATE SEQUENCE user_index_seq START 1 OWNED BY users.idx;

CREATE TABLE wallets (
    address_lower  text PRIMARY KEY,
    address        text NOT NULL,
    user_id        text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    linked_at      timestamptz NOT NULL
);
CREATE INDEX wallets_user ON wallets (user_id);

CREATE TABLE recovery_codes (
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  text NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE outbox (
    seq           bigserial PRIMARY KEY,
    id            text NOT NULL UNIQUE,
    type          text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    data          jsonb NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    published_at  timestamptz
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;

CREATE TABLE processed_events (
    consumer      text NOT NULL,
    event_id      text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Masters context: masters, the artists' daily quota, IPOs, the share ledger (specific token ids
-- per reservation), allocations with their hold, custodial addresses seen, dividend deposits seen.
CREATE TABLE masters (
    id                text PRIMARY KEY,
    artist_id         text NOT NULL,
    title             text NOT NULL,
    metadata          jsonb NOT NULL,
    audio_cid         text NOT NULL,
    metadata_cid      text NOT NULL,
    artist_address    text NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'registered', 'failed')),
    contract_address  text,
    dividend_address  text,
    deploy_job_id     text,
    error_code        text,
    error_message     text,
    final_audio_cid   text,
    locked_at         timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX masters_artist ON masters (artist_id, id);
CREATE INDEX masters_registered ON masters (id) WHERE status = 'registered';
CREATE UNIQUE INDEX masters_contract ON masters (contract_address) WHERE contract_address IS NOT NULL;
CREATE UNIQUE INDEX masters_vault ON masters (dividend_address) WHERE dividend_address IS NOT NULL;

CREATE TABLE master_quota (
    artist_id  text NOT NULL,
    day        date NOT NULL,
    used       integer NOT NULL CHECK (used >= 0),
    PRIMARY KEY (artist_id, day)
);

CREATE TABLE ipos (
    master_id       text PRIMARY KEY REFERENCES masters (id) ON DELETE CASCADE,
    total_shares    integer NOT NULL CHECK (total_shares BETWEEN 1 AND 10000),
    mint_requested  integer NOT NULL DEFAULT 0,
    minted          integer NOT NULL DEFAULT 0,
    shares_sold     integer NOT NULL DEFAULT 0,
    price_amount    bigint NOT NULL CHECK (price_amount > 0),
    price_currency  text NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    max_per_user    integer NOT NULL,
    supply_job_id   text,
    launched_at     timestamptz,
    closed_at       timestamptz,
    created_at      timestamptz NOT NULL,
    CHECK (mint_requested BETWEEN 0 AND total_shares),
    CHECK (minted BETWEEN 0 AND mint_requested),
    CHECK (ends_at > starts_at)
);
CREATE INDEX ipos_to_launch ON ipos (starts_at) WHERE launched_at IS NULL;
CREATE INDEX ipos_to_close ON ipos (ends_at) WHERE closed_at IS NULL;

-- Mint jobs that reverted before the supply cap was set; queued again when it is.
CREATE TABLE ipo_parked_mints (
    job_id     text PRIMARY KEY,
    master_id  text NOT NULL REFERENCES masters (id) ON DELETE CASCADE
);

-- A share id appears at most once: the primary key is what stops two checkouts taking it.
CREATE TABLE ipo_tokens (
    master_id       text NOT NULL REFERENCES masters (id) ON DELETE CASCADE,
    token_id        integer NOT NULL CHECK (token_id >= 1),
    reservation_id  text NOT NULL,
    state           text NOT NULL CHECK (state IN ('reserved', 'sold', 'allocated', 'artist')),
    PRIMARY KEY (master_id, token_id)
);
CREATE INDEX ipo_tokens_reservation ON ipo_tokens (reservation_id);

CREATE TABLE share_allocations (
    job_id      text PRIMARY KEY,
    master_id   text NOT NULL REFERENCES masters (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    address     text NOT NULL,
    token_ids   integer[] NOT NULL,
    hold_until  timestamptz,
    created_at  timestamptz NOT NULL
);
CREATE INDEX share_allocations_user ON share_allocations (user_id, master_id);

CREATE TABLE custodial_addresses (
    address  text PRIMARY KEY,
    user_id  text NOT NULL
);

CREATE TABLE master_deposits_seen (
    tx_hash    text NOT NULL,
    log_index  integer NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);

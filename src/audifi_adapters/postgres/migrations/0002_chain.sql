-- Chain context: durable chain jobs and their signed transactions, signer nonces,
-- the indexer's cursor (tied to a chain) and the projections it maintains from our contracts' logs.
CREATE TABLE chain_jobs (
    id             text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('deploy_master', 'mint', 'transfer', 'withdraw', 'claim', 'deploy_coin')),
    status         text NOT NULL CHECK (status IN ('queued', 'submitted', 'confirmed', 'failed')),
    requester_id   text NOT NULL,
    op_key         text NOT NULL UNIQUE,
    call           jsonb NOT NULL,
    tx_hashes      text[] NOT NULL DEFAULT '{}',
    result         jsonb,
    error_code     text,
    error_message  text,
    attempts       integer NOT NULL DEFAULT 0,
    step           integer NOT NULL DEFAULT 0,
    state          jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX chain_jobs_queued ON chain_jobs (updated_at, id) WHERE status = 'queued';
CREATE INDEX chain_jobs_submitted ON chain_jobs (id) WHERE status = 'submitted';
CREATE INDEX chain_jobs_requester ON chain_jobs (requester_id, created_at);

CREATE TABLE chain_txs (
    seq            bigserial UNIQUE,
    id             text PRIMARY KEY,
    job_id         text REFERENCES chain_jobs (id) ON DELETE CASCADE,
    step           integer NOT NULL,
    sender         text NOT NULL,
    nonce          bigint NOT NULL,
    raw            bytea NOT NULL,
    tx_hash        text NOT NULL UNIQUE,
    max_fee        numeric(78, 0) NOT NULL,
    priority_fee   numeric(78, 0) NOT NULL,
    state          text NOT NULL CHECK (state IN ('signed', 'broadcast', 'mined', 'final', 'replaced', 'dropped')),
    block_number   bigint,
    success        boolean,
    broadcasts     integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX chain_txs_open ON chain_txs (sender, nonce, seq) WHERE state IN ('signed', 'broadcast', 'mined');
CREATE INDEX chain_txs_job ON chain_txs (job_id, seq);

CREATE TABLE chain_nonces (
    address  text PRIMARY KEY,
    nonce    bigint NOT NULL CHECK (nonce >= 0)
);

CREATE TABLE chain_indexer (
    id             integer PRIMARY KEY CHECK (id = 1),
    chain_id       numeric(78, 0),
    genesis_hash   text,
    cursor_number  bigint,
    cursor_hash    text,
    cursor_parent  text,
    cursor_ts      bigint
);

CREATE TABLE chain_blocks (
    number       bigint PRIMARY KEY,
    hash         text NOT NULL,
    parent_hash  text NOT NULL DEFAULT '',
    ts           bigint NOT NULL DEFAULT 0
);

CREATE TABLE chain_contracts (
    address       text PRIMARY KEY,
    kind          text NOT NULL,
    ref           text NOT NULL,
    block_number  bigint NOT NULL
);

CREATE TABLE chain_logs (
    tx_hash       text NOT NULL,
    log_index     integer NOT NULL,
    block_number  bigint NOT NULL,
    block_hash    text NOT NULL,
    address       text NOT NULL,
    event         text NOT NULL,
    args          jsonb NOT NULL,
    topic_count   integer NOT NULL,
    token_id      numeric(78, 0),
    account       text,
    amount        numeric(78, 0),
    at            timestamptz,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE INDEX chain_logs_block ON chain_logs (block_number);
CREATE INDEX chain_logs_address ON chain_logs (address, event, block_number, log_index);
CREATE INDEX chain_logs_token ON chain_logs (address, token_id, block_number, log_index) WHERE token_id IS NOT NULL;

CREATE TABLE chain_share_owners (
    contract      text NOT NULL,
    token_id      numeric(78, 0) NOT NULL,
    owner         text NOT NULL,
    block_number  bigint NOT NULL,
    log_index     integer NOT NULL,
    PRIMARY KEY (contract, token_id)
);
CREATE INDEX chain_share_owners_owner ON chain_share_owners (contract, owner, token_id);

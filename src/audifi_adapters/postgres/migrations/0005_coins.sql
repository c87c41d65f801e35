-- Coins context: one artist coin per artist (the primary key is the constraint), written in the
-- same transaction as its deploy_coin chain job; addresses filled in when the job is confirmed.
CREATE TABLE artist_coins (
    artist_id        text PRIMARY KEY,
    name             text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 32),
    symbol           text NOT NULL CHECK (symbol ~ '^[A-Z]{2,8}$'),
    initial_supply   numeric(78, 0) NOT NULL CHECK (initial_supply > 0),
    owner_address    text NOT NULL,
    job_id           text NOT NULL UNIQUE,
    status           text NOT NULL CHECK (status IN ('pending', 'deployed', 'failed')),
    coin_address     text,
    staking_address  text,
    pool_address     text,
    attempt          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK (status <> 'deployed' OR (coin_address IS NOT NULL AND staking_address IS NOT NULL
                                    AND pool_address IS NOT NULL))
);
CREATE INDEX artist_coins_deployed ON artist_coins (created_at, artist_id) WHERE status = 'deployed';

-- The last final chain log (block, log index) turned into coin.* domain events.
CREATE TABLE coin_event_cursor (
    id            integer PRIMARY KEY CHECK (id = 1),
    block_number  bigint NOT NULL,
    log_index     integer NOT NULL
);

-- V Studio: sessions on a master, invited producers, decisions, votes (one per user per decision,
-- an upsert), the weight snapshot of weighted decisions, contributions.
-- Tallies are never stored: studio_tally() takes a seq from a sequence (no row every vote locks)
-- and only then recounts, so the update with the highest seq always includes every committed vote.
CREATE SEQUENCE studio_seq;

CREATE TABLE studio_sessions (
    id          text PRIMARY KEY,
    master_id   text NOT NULL,
    artist_id   text NOT NULL,
    title       text NOT NULL,
    audience    text NOT NULL CHECK (audience IN ('everyone', 'subscribers', 'shareholders')),
    weighted    boolean NOT NULL DEFAULT false,
    status      text NOT NULL CHECK (status IN ('open', 'locked')),
    final_cid   text,
    created_at  timestamptz NOT NULL,
    locked_at   timestamptz
);
CREATE INDEX studio_sessions_master ON studio_sessions (master_id, created_at);

CREATE TABLE studio_producers (
    session_id  text NOT NULL REFERENCES studio_sessions (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    invited_at  timestamptz NOT NULL,
    PRIMARY KEY (session_id, user_id)
);

CREATE TABLE studio_decisions (
    id          text PRIMARY KEY,
    session_id  text NOT NULL REFERENCES studio_sessions (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    prompt      text NOT NULL,
    options     text[] NOT NULL CHECK (cardinality(options) BETWEEN 2 AND 10),
    status      text NOT NULL CHECK (status IN ('open', 'closed')),
    weighted    boolean NOT NULL DEFAULT false,
    closes_at   timestamptz,
    created_at  timestamptz NOT NULL,
    closed_at   timestamptz,
    winner      text,
    UNIQUE (session_id, position)
);
CREATE INDEX studio_decisions_due ON studio_decisions (closes_at) WHERE status = 'open' AND closes_at IS NOT NULL;

CREATE TABLE studio_weights (
    decision_id text NOT NULL REFERENCES studio_decisions (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    weight      bigint NOT NULL CHECK (weight >= 0),
    PRIMARY KEY (decision_id, user_id)
);

CREATE TABLE studio_votes (
    decision_id text NOT NULL REFERENCES studio_decisions (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    choice      text NOT NULL,
    weight      bigint NOT NULL DEFAULT 0,
    cast_at     timestamptz NOT NULL,
    PRIMARY KEY (decision_id, user_id)
);
CREATE INDEX studio_votes_tally ON studio_votes (decision_id, choice) INCLUDE (weight);

CREATE TABLE studio_contributions (
    seq         bigserial UNIQUE,
    id          text PRIMARY KEY,
    session_id  text NOT NULL REFERENCES studio_sessions (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    kind        text NOT NULL,
    description text NOT NULL,
    cid         text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX studio_contributions_session ON studio_contributions (session_id, seq);

-- A new seq, then (a new statement, so a new snapshot under READ COMMITTED) the recount of the
-- decisions given, counts and weight sums in option order.
CREATE FUNCTION studio_tally(p_decisions text[])
RETURNS TABLE (decision_id text, seq bigint, options text[], counts bigint[], weights bigint[], weighted boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    s bigint;
BEGIN
    s := nextval('studio_seq');
    RETURN QUERY
    SELECT d.id, s, d.options,
           array_agg(coalesce(c.n, 0) ORDER BY o.ord),
           array_agg(coalesce(c.w, 0) ORDER BY o.ord),
           d.weighted
    FROM studio_decisions d
    CROSS JOIN LATERAL unnest(d.options) WITH ORDINALITY AS o (label, ord)
    LEFT JOIN LATERAL (
        SELECT count(*)::bigint AS n, sum(v.weight)::bigint AS w
        FROM studio_votes v WHERE v.decision_id = d.id AND v.choice = o.label
    ) c ON true
    WHERE d.id = ANY (p_decisions)
    GROUP BY d.id, d.options, d.weighted, d.position
    ORDER BY d.position;
END
$$;

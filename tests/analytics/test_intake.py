"""Client events in: types, limits, timestamps and in-batch duplicates (pure core, no I/O)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from audifi_core.analytics import MAX_BATCH, MAX_EVENT_BYTES, parse_client_body, parse_client_events
from audifi_core.errors import PayloadTooLarge, ValidationError

NOW = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


def parse(payload, user_id=None):
    counter = itertools.count()
    batch = parse_client_events(payload, now=NOW, user_id=user_id, new_id=lambda: f"gen_{next(counter)}")
    return batch.events()


class TestClientEvents:
    def test_one_event_with_every_field(self):
        """A single event keeps its id, type, time, master, anonymous id and properties; the user comes from the token."""
        [e] = parse({"id": "c1", "type": "play", "occurredAt": "2026-05-01T11:00:00Z", "masterId": "mst_1",
                     "anonymousId": "anon-9", "properties": {"position": 12}, "userId": "forged"}, user_id="usr_1")
        assert (e.id, e.type, e.master_id, e.anonymous_id, e.user_id) == ("c1", "play", "mst_1", "anon-9", "usr_1")
        assert e.occurred_at == datetime(2026, 5, 1, 11, tzinfo=UTC) and e.received_at == NOW
        assert e.properties == '{"position":12}'

    def test_batch_defaults_and_duplicates(self):
        """A batch gets server ids and arrival times where absent; the first of two equal ids wins."""
        out = parse({"batch": [{"type": "pause"}, {"id": "x", "type": "skip"}, {"id": "x", "type": "complete"}]})
        assert [(e.id, e.type) for e in out] == [("gen_0", "pause"), ("x", "skip")]
        assert all(e.occurred_at == NOW for e in out)

    def test_future_times_are_clamped(self):
        """An occurredAt in the future is booked at arrival; one in the past is kept."""
        future = (NOW + timedelta(days=2)).isoformat()
        past = (NOW - timedelta(days=30)).isoformat()
        a, b = parse({"batch": [{"type": "play", "occurredAt": future}, {"type": "play", "occurredAt": past}]})
        assert a.occurred_at == NOW and b.occurred_at == NOW - timedelta(days=30)

    @pytest.mark.parametrize("payload, field", [
        ({"type": "purchase"}, "type"),
        ({"masterId": "m"}, "type"),
        ({"batch": [{"type": "play"}, {"type": "payment.succeeded"}]}, "batch[1].type"),
        ({"type": "play", "occurredAt": "yesterday"}, "occurredAt"),
        ({"type": "play", "occurredAt": "2026-05-01T10:00:00"}, "occurredAt"),
        ({"type": "play", "masterId": 7}, "masterId"),
        ({"type": "play", "id": "x" * 129}, "id"),
        ({"type": "play", "properties": [1]}, "properties"),
        ({"batch": {"type": "play"}}, "batch"),
        ({"batch": ["play"]}, "batch[0]"),
    ])
    def test_invalid_events_name_the_field(self, payload, field):
        """Every invalid event is a 400 naming the field, with its index in a batch."""
        with pytest.raises(ValidationError) as e:
            parse(payload)
        assert field in e.value.fields, e.value.fields

    def test_batch_over_the_limit(self):
        """More than MAX_BATCH events is a 413 naming the limit."""
        with pytest.raises(PayloadTooLarge) as e:
            parse({"batch": [{"type": "play"}] * (MAX_BATCH + 1)})
        assert e.value.details == {"limit": MAX_BATCH, "size": MAX_BATCH + 1}
        assert len(parse({"batch": [{"type": "play"}] * MAX_BATCH})) == MAX_BATCH

    def test_event_over_the_size_limit(self):
        """An event over 32 KB as JSON is a 413 naming the limit and the event; one just under passes."""
        big = {"type": "play", "properties": {"blob": "x" * MAX_EVENT_BYTES}}
        with pytest.raises(PayloadTooLarge) as e:
            parse({"batch": [{"type": "play"}, big]})
        assert e.value.details == {"limit": MAX_EVENT_BYTES, "field": "batch[1]"}
        fits = {"type": "play", "properties": {"blob": "x" * (MAX_EVENT_BYTES - 200)}}
        assert len(parse(fits)) == 1


def body(payload) -> bytes:
    return orjson.dumps(payload)


def parse_raw(raw: bytes, user_id=None):
    counter = itertools.count()
    return parse_client_body(raw, now=NOW, user_id=user_id, new_id=lambda: f"gen_{next(counter)}")


class TestClientBody:
    def test_the_typed_decoder_agrees_with_the_careful_path(self):
        """Straight from bytes, a valid batch gives exactly the rows the dict path gives."""
        payload = {"batch": [
            {"id": "a", "type": "play", "occurredAt": "2026-05-01T13:00:00+02:00", "masterId": "m",
             "anonymousId": "x", "properties": {"k": [1, 2], "s": "é"}},
            {"type": "skip", "properties": None}, {"id": "a", "type": "complete"},
            {"type": "share_view", "occurredAt": "2030-01-01T00:00:00Z", "extra": True},
        ]}
        fast = parse_raw(body(payload), user_id="u1")
        careful = parse_client_events(payload, now=NOW, user_id="u1", new_id=iter(["gen_0", "gen_1"]).__next__)
        assert fast == careful
        assert fast.rows[0][2] == datetime(2026, 5, 1, 11, tzinfo=UTC) and fast.rows[2][2] == NOW
        assert orjson.loads(fast.rows[0][5]) == {"k": [1, 2], "s": "é"}
        assert [r[0] for r in parse_raw(body({"type": "play"})).rows] == ["gen_0"]

    @pytest.mark.parametrize("raw, error, where", [
        (b'{"batch": [{"type": "nope"}]}', ValidationError, "batch[0].type"),
        (b'{"type": "play", "occurredAt": "2026-05-01T10:00:00"}', ValidationError, "occurredAt"),
        (b'{"type": "play", "id": ""}', ValidationError, "id"),
        (b'{"batch": [{"type": "play", "properties": [1]}]}', ValidationError, "batch[0].properties"),
        (b'{"type": "play"', ValidationError, "body"),
        (b'[1, 2]', ValidationError, "body"),
    ])
    def test_refused_bodies_get_the_precise_error(self, raw, error, where):
        """What the typed decoder refuses is explained by the careful path, field by field."""
        with pytest.raises(error) as e:
            parse_raw(raw)
        assert where in e.value.fields

    def test_limits_from_bytes(self):
        """Over 1000 events or an event over 32 KB: 413 from the bytes path too."""
        with pytest.raises(PayloadTooLarge):
            parse_raw(body({"batch": [{"type": "play"}] * (MAX_BATCH + 1)}))
        with pytest.raises(PayloadTooLarge):
            parse_raw(body({"type": "play", "properties": {"x": "y" * MAX_EVENT_BYTES}}))

    def test_without_the_typed_decoder_the_answers_are_the_same(self, monkeypatch):
        """With msgspec absent every body takes the careful path, with the same rows."""
        from audifi_core.analytics import intake

        payload = body({"batch": [{"id": "a", "type": "play", "masterId": "m", "properties": {"x": 1}},
                                  {"type": "pause"}]})
        fast = parse_raw(payload)
        monkeypatch.setattr(intake, "_typed", None)
        assert parse_raw(payload) == fast

"""The event bus on Redis Streams (in memory in dev), fed by the transactional outbox."""

from .bus import StreamBus, UnsentEvents, cancel_and_wait, default_consumer_name
from .consumer import ConsumerSettings, StreamConsumer
from .guardian import PostgresUnsentEvents, StreamGuardian, TickReport
from .log import DeadLetter, Delivery, EventLog, Floor, InMemoryEventLog
from .redis_log import RedisEventLog

__all__ = [
    "StreamBus",
    "UnsentEvents",
    "default_consumer_name",
    "cancel_and_wait",
    "ConsumerSettings",
    "StreamConsumer",
    "PostgresUnsentEvents",
    "StreamGuardian",
    "TickReport",
    "DeadLetter",
    "Delivery",
    "EventLog",
    "Floor",
    "InMemoryEventLog",
    "RedisEventLog",
]

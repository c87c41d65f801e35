"""The analytics context: client and server events, hourly/daily summaries, dashboards."""

from .intake import parse_client_events
from .model import (
    CLIENT_TYPES,
    DEDUPE_WINDOW,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_BUCKETS,
    MAX_EVENT_BYTES,
    SERVER_TYPES,
    AnalyticsEvent,
    Interval,
    Metrics,
    MetricsAccumulator,
    Money,
    Report,
    Scope,
    SeriesPoint,
    buckets_between,
    floor_to,
    listener_of,
)
from .ports import AnalyticsRepository, MasterDirectory
from .service import CONSUMER, AnalyticsService, AnalyticsSettings

__all__ = [
    "CLIENT_TYPES",
    "SERVER_TYPES",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_BUCKETS",
    "MAX_EVENT_BYTES",
    "DEDUPE_WINDOW",
    "AnalyticsEvent",
    "Interval",
    "Metrics",
    "MetricsAccumulator",
    "Money",
    "Report",
    "Scope",
    "SeriesPoint",
    "buckets_between",
    "floor_to",
    "listener_of",
    "parse_client_events",
    "AnalyticsRepository",
    "MasterDirectory",
    "AnalyticsService",
    "AnalyticsSettings",
    "CONSUMER",
]

"""Prometheus metrics; one registry per process, served by the API and the worker.

Names follow Prometheus conventions: base units (``_seconds``), ``_total`` on counters
(prometheus_client appends it), and labels from bounded sets only (provider, country,
state, outcome, queue): never a number or an id.
"""

from __future__ import annotations

from importlib.metadata import version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The counters, gauges and histograms smsrelay exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sends = Counter(
            "smsrelay_sends",
            "Provider send attempts by outcome",
            ["provider", "country", "outcome"],
            registry=self.registry,
        )
        self.send_latency = Histogram(
            "smsrelay_send_latency_seconds",
            "Time a provider took to answer a send",
            ["provider", "country"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10),
        )
        self._latencies()
        self.messages = Counter(
            "smsrelay_messages", "Messages by final state", ["state"], registry=self.registry
        )
        self.possible_duplicates = Counter(
            "smsrelay_possible_duplicates",
            "Sends that may repeat an earlier one: after a crash mid-send, or a lost answer",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "smsrelay_duplicate_requests",
            "Requests whose id was already handled",
            registry=self.registry,
        )
        self.id_conflicts = Counter(
            "smsrelay_id_conflicts",
            "Requests refused because their id was taken for a different request",
            registry=self.registry,
        )
        self.retries = Counter(
            "smsrelay_retries_scheduled",
            "Messages deferred to a delayed retry",
            registry=self.registry,
        )
        self.parts = Counter(
            "smsrelay_parts",
            "SMS parts handed to providers (what they bill), by provider and country",
            ["provider", "country"],
            registry=self.registry,
        )
        self.estimated_cost = Counter(
            "smsrelay_estimated_cost",
            "Estimated cost of sent messages (parts x price), in the price's currency",
            ["provider", "country", "currency"],
            registry=self.registry,
        )
        self.actual_cost = Counter(
            "smsrelay_actual_cost",
            "Cost of sent messages as the provider reported it, in its currency",
            ["provider", "country", "currency"],
            registry=self.registry,
        )
        self.receipts = Counter(
            "smsrelay_receipts",
            "Delivery receipts by provider and status",
            ["provider", "status"],
            registry=self.registry,
        )
        self.receipt_refusals = Counter(
            "smsrelay_receipt_refusals",
            "Refused receipt webhooks by provider and kind (bad_signature, replayed, stale, "
            "oversized, malformed)",
            ["provider", "reason"],
            registry=self.registry,
        )
        self._operations()

    def _latencies(self) -> None:
        # Per provider x country, as the send counters: configured provider names times
        # ISO regions (phonenumbers' ~250, "ZZ" for none) bound the label set, so no cap.
        self.publish_to_request = Histogram(
            "smsrelay_publish_to_request_seconds",
            "Time from a request's publish to each provider request made for it "
            "(retry delays and failed-over providers included)",
            ["provider", "country"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.send_to_receipt = Histogram(
            "smsrelay_send_to_receipt_seconds",
            "Time from a provider taking a send to the delivery receipt that settled "
            "the message (delivered, undelivered or failed)",
            ["provider", "country"],
            registry=self.registry,
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
        )

    def _operations(self) -> None:
        # What an operator watches besides sends: the queues, the process, the build.
        self.queue_messages = Gauge(
            "smsrelay_queue_messages",
            "Messages ready in a queue, as the broker last reported",
            ["queue"],
            registry=self.registry,
        )
        self.queue_consumers = Gauge(
            "smsrelay_queue_consumers",
            "Consumers of a queue, as the broker last reported",
            ["queue"],
            registry=self.registry,
        )
        self.queue_poll_failures = Counter(
            "smsrelay_queue_poll_failures",
            "Reads of queue depth and consumers that failed (broker unreachable)",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "smsrelay_in_flight_sends",
            "Deliveries this worker is processing now",
            registry=self.registry,
        )
        self.consuming = Gauge(
            "smsrelay_worker_consuming",
            "1 while this process consumes sms.send",
            registry=self.registry,
        )
        Gauge(
            "smsrelay_build_info",
            "Always 1; the version is a label",
            ["version"],
            registry=self.registry,
        ).labels(version("smsrelay")).set(1)

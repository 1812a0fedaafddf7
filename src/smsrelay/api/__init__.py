"""The HTTP API: send and look up messages, receive delivery receipts, health and metrics.

``create_app`` builds the FastAPI app from running pieces; ``smsrelay api`` serves it.
"""

from __future__ import annotations

from smsrelay.api.app import create_app
from smsrelay.api.broker import AmqpPublisher, BrokerUnavailable, Publisher

__all__ = ["AmqpPublisher", "BrokerUnavailable", "Publisher", "create_app"]

"""Throughput and latency benchmark: smsrelay against a bare consumer and a Celery peer.

``python -m bench`` (or ``make bench``) runs every pipeline against the same RabbitMQ,
the same fake Twilio (``bench.fake_provider``, a process of its own) and the same
message set, and prints a markdown table with the targets' verdicts. See
``bench/README.md`` for what each figure means.
"""

"""smsrelay's tests: a package, so `python -m tests.fakes.twilio` and `tests.*` imports work."""

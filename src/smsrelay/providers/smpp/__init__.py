"""The ``smpp`` provider: SMPP 3.4 binds to an SMSC (see provider.py)."""

from smsrelay.providers.smpp.provider import SmppProvider, SmppSettings

__all__ = ["SmppProvider", "SmppSettings"]

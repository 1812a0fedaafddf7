"""Provider registry: a provider type name → the class that implements it.

Adding a provider is one file in this package and one line here.
"""

from __future__ import annotations

import importlib

from smsrelay.errors import ConfigError
from smsrelay.providers.base import Provider, ProviderSettings, Webhook

# type name → "module:Class"; imported lazily so a deployment loads only what it uses.
REGISTRY: dict[str, str] = {
    "http": "smsrelay.providers.http:HttpGatewayProvider",
    "infobip": "smsrelay.providers.infobip:InfobipProvider",
    "messagebird": "smsrelay.providers.messagebird:MessageBirdProvider",
    "plivo": "smsrelay.providers.plivo:PlivoProvider",
    "simulator": "smsrelay.providers.simulator:SimulatorProvider",
    "sinch": "smsrelay.providers.sinch:SinchProvider",
    "smpp": "smsrelay.providers.smpp:SmppProvider",
    "sns": "smsrelay.providers.sns:SnsProvider",
    "telnyx": "smsrelay.providers.telnyx:TelnyxProvider",
    "twilio": "smsrelay.providers.twilio:TwilioProvider",
    "vonage": "smsrelay.providers.vonage:VonageProvider",
}


def provider_class(type_name: str) -> type[Provider]:
    """The class registered for ``type_name``, or ``ConfigError``."""
    try:
        target = REGISTRY[type_name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError("type", f"unknown provider type {type_name!r} (known: {known})") from None
    module, _, cls = target.partition(":")
    found: type[Provider] = getattr(importlib.import_module(module), cls)
    return found


def build(name: str, settings: ProviderSettings) -> Provider:
    """Instantiate the configured provider ``name``."""
    return provider_class(settings.type)(name, settings)


__all__ = ["REGISTRY", "Provider", "ProviderSettings", "Webhook", "build", "provider_class"]

"""Fake providers: real HTTP servers on loopback that speak each provider's wire format."""

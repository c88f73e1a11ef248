"""Study protocol: validated model, built-in protocols, schedule and deviations."""

from celltrial.protocol.loader import (
    DEFAULT_PROTOCOL,
    builtin_protocols,
    load_builtin_protocol,
    parse_protocol,
    read_protocol,
    resolve_protocol,
)
from celltrial.protocol.model import Protocol, Visit

__all__ = [
    "DEFAULT_PROTOCOL",
    "Protocol",
    "Visit",
    "builtin_protocols",
    "load_builtin_protocol",
    "parse_protocol",
    "read_protocol",
    "resolve_protocol",
]

"""Which hosts an outbound request may go to: the allow-list match and the public-address
rule that ``fetch_external_data`` and webhook deliveries share (the API checks a webhook's
URL with them at registration, the worker again, with DNS, at each delivery)."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def normalize_host(host: str) -> str:
    """Lower-case, IDNA-encoded, without a trailing dot: the form allow-lists compare."""
    host = host.strip().rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``host`` matches an entry exactly, or is a subdomain of a ``*.suffix`` entry."""
    host = normalize_host(host)
    if ip_literal(host) is not None:  # wildcards name domains, never address ranges
        return any(ip_literal(entry) == ip_literal(host) for entry in allowed)
    for entry in allowed:
        if entry.startswith("*."):
            suffix = normalize_host(entry[2:])
            if suffix and host.endswith("." + suffix):
                return True
        elif host == normalize_host(entry):
            return True
    return False


def is_public_address(ip: IPAddress) -> bool:
    """Routable on the internet: not private, loopback, link-local, multicast, reserved,
    unspecified or shared (CGNAT); IPv4-mapped IPv6 addresses are judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None

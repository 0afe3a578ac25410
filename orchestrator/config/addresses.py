"""Which addresses a customer's HOST or PING_URL may reach: public ones, and the allowed.

The daemon and its workers sit on the host's network, so a customer naming 127.0.0.1:22,
the cloud's metadata address or a neighbour on the LAN would have us connect there for
them. An address in a loopback, private, link-local, shared, unspecified, multicast or
reserved range is refused unless it lies in a network of UNSTOPPABLE_ALLOW_PRIVATE_TARGETS.
An IPv6 address carrying an IPv4 one (`::ffff:127.0.0.1`, NAT64, 6to4) is judged by that
one; an IPv4 address spelled another way than a.b.c.d (`2130706433`, `0x7f.1`,
`0177.0.0.1`), which the C resolver reads as an address, is refused outright.
"""

import ipaddress
import re
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED = (
    "is a loopback, private, link-local, multicast or reserved address, outside "
    "UNSTOPPABLE_ALLOW_PRIVATE_TARGETS"
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\.?$){_LABEL}(\.{_LABEL})*\.?")


def host_problem(host: str) -> str | None:
    """Return why `host` is not a host name or an IP address, or None."""
    if literal(host) is not None:
        return None
    if numeric(host):
        return "an IPv4 address must be written as four decimal numbers (a.b.c.d)"
    if not _HOST_NAME.fullmatch(host):
        return "must be a host name or an IP address (the port goes in PORT)"
    return None


def literal(host: str) -> Address | None:
    """Return the IP address `host` spells in its canonical form, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def numeric(host: str) -> bool:
    """Return whether the C resolver would read `host` as an IPv4 address (inet_aton)."""
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def address_problem(address: Address, allowed: tuple[Network, ...]) -> str | None:
    """Return why a customer may not reach `address`, or None."""
    reached = _translated(address) or address  # where the packets really go
    if any(reached in network for network in allowed):
        return None
    judged = [reached]
    if isinstance(reached, ipaddress.IPv6Address) and reached.sixtofour is not None:
        judged.append(reached.sixtofour)  # a relay's way there, to an address we judge too
    return REFUSED if any(_private(a) for a in judged) else None


def literal_problem(host: str, allowed: tuple[Network, ...]) -> str | None:
    """Return why `host`, if it is an address, may not be reached; None for a name."""
    if numeric(host) and literal(host) is None:
        return "an IPv4 address must be written as four decimal numbers (a.b.c.d)"
    address = literal(host)
    return None if address is None else address_problem(address, allowed)


def _translated(address: Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 one reaches (mapped, NAT64), else None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _private(address: Address) -> bool:
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )

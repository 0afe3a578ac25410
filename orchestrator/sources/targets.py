"""Whether a customer's server may be reached now: its name resolved, every address judged.

`validate` refuses a private address written as such; a host name can point anywhere and
change its mind, so it is resolved just before the daemon or a worker connects (a worker
launched, a certificate fetched, a ping sent), and every address it resolves to must pass
`addresses.address_problem`. Never says which address it found: the customer could learn
the insides of our network one name at a time.
"""

import socket

from orchestrator import deadline
from orchestrator.config.addresses import Network, address_problem, literal, numeric
from orchestrator.model import Reason

RESOLVE_SECONDS = 10.0


def reach_problem(host: str, port: int, allowed: tuple[Network, ...]) -> tuple[Reason, str] | None:
    """Return (reason, why) `host` may not be reached now, or None.

    `source_refused` when it is, or resolves to, an address a customer may not reach;
    `connect` when it cannot be resolved at all (the same reason rclone's attempt would get).
    """
    return vetted(host, port, allowed)[1]


def vetted(
    host: str, port: int, allowed: tuple[Network, ...]
) -> tuple[tuple[str, ...], tuple[Reason, str] | None]:
    """Return the addresses `host` resolves to now, and why they may not be reached (or None).

    A caller that connects itself should connect to these addresses, not resolve the name
    again: a second answer from the customer's DNS may point elsewhere (rebinding).
    """
    if numeric(host) and literal(host) is None:
        return (), (
            Reason.SOURCE_REFUSED,
            "an IPv4 address must be written as four decimal numbers",
        )
    address = literal(host)
    if address is not None:
        why = address_problem(address, allowed)
        return (str(address),), ((Reason.SOURCE_REFUSED, why) if why else None)
    try:
        found = deadline.call(
            lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM),
            RESOLVE_SECONDS,
            "resolving it",
        )
    except deadline.DeadlineExceeded as exc:
        return (), (Reason.CONNECT, f"cannot be resolved: {exc}")
    except (OSError, UnicodeError) as exc:
        return (), (
            Reason.CONNECT,
            f"cannot be resolved: {getattr(exc, 'strerror', None) or 'error'}",
        )
    addresses = {literal(str(info[4][0]).split("%")[0]) for info in found}
    if not addresses or None in addresses:
        return (), (Reason.CONNECT, "cannot be resolved to an IP address")
    for each in addresses:
        if each is not None and (why := address_problem(each, allowed)):
            return (), (Reason.SOURCE_REFUSED, f"resolves to an address that {why}")
    return tuple(sorted(str(a) for a in addresses if a is not None)), None

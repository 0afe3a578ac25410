"""Dead-man's-switch pings (healthchecks.io style): start, success and fail of every run.

A second channel that needs neither this host's Prometheus nor this host: a check that
stops hearing from a job alerts by itself. Which URL a job pings: its resource's `PING_URL`,
else the customer's `PING_URL` + `/<resource>`, else the global `UNSTOPPABLE_PING_URL` +
`/<customer>-<resource>` (healthchecks' slug URLs).
"""

import logging
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from orchestrator.customer import Customer, Resource

log = logging.getLogger(__name__)
SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}
TIMEOUT_SECONDS = 10
ATTEMPTS = 3


def ping_url(global_base: str | None, customer: Customer, resource: Resource) -> str | None:
    """Return the check URL of `customer`/`resource`, or None when no ping is configured."""
    if own := resource.option("PING_URL"):
        return own
    if customer.ping_url:
        return f"{customer.ping_url.rstrip('/')}/{resource.name}"
    if global_base:
        return f"{global_base.rstrip('/')}/{customer.name}-{resource.name}"
    return None


def send(url: str, event: str, body: str, job: str) -> bool:
    """POST `body` to the `event` endpoint of `url`; return whether it was delivered.

    Never raises: a ping that cannot be delivered must not fail the backup. The URL is not
    logged, since a ping key in it lets anyone report on the job's behalf.
    """
    target = url.rstrip("/") + SUFFIX[event]
    data = body.encode("utf-8")[:10_000]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            request = urllib.request.Request(
                target, data=data, method="POST", headers={"Content-Type": "text/plain"}
            )
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                if 200 <= response.status < 300:
                    return True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if attempt == ATTEMPTS:
                log.warning(
                    "%s: %s ping to %s failed: %s", job, event, urlsplit(url).hostname, reason
                )
                return False
        time.sleep(attempt)
    return False

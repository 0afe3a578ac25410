"""What a receipt needs of a job's configuration: its backup schedule and its RECEIPT_URL."""

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.config.customer import Customers
from orchestrator.model import JobKey


@dataclass(frozen=True)
class Terms:
    """A job's backup schedule (for the time a receipt promises) and where receipts are
    POSTed too (its `<R>_RECEIPT_URL`, else the customer's `RECEIPT_URL`)."""

    schedule: str
    timezone: str
    receipt_url: str | None = None


JobTerms = Callable[[JobKey], Terms | None]  # None: the job is not configured (any more)


def terms_of(customers: Callable[[], Customers]) -> JobTerms:
    """Return the terms of each job as the newest view of `customers` gives them."""

    def terms(job: JobKey) -> Terms | None:
        customer = customers().by_name.get(job.customer)
        if customer is None or job.resource not in {r.name for r in customer.resources}:
            return None
        resource = customer.resource(job.resource)
        url = resource.source.RECEIPT_URL or customer.receipt_url
        return Terms(resource.schedule, customer.timezone, url)

    return terms

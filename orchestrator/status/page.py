"""The status pages as HTML: one per customer, and the operator's overview. No JavaScript.

A customer's page says only what is the customer's own: no message text (rustic's and the
servers' words may hold paths and host names), no path, no other customer. Reasons are put in
plain words from a closed set.
"""

from datetime import UTC, datetime
from html import escape

from orchestrator.status.facts import Health, JobFacts

REFRESH_SECONDS = 60

# What a failed run's reason means to a customer (the closed set of model.Reason).
WORDS = {
    "source_missing": "the folder to back up was not there",
    "source_refused": "a setting points somewhere backups may not reach",
    "source_empty": "the source was empty; the last good backup is kept",
    "source_shrunk": "the source shrank more than allowed; the last good backup is kept",
    "source_unreadable": "some files could not be read",
    "mount": "your server's files could not be opened",
    "connect": "your server could not be reached",
    "tls": "the encrypted connection to your server failed",
    "auth": "your server refused the login",
    "host_key": "your server's identity (host key or certificate) did not match",
    "path_not_found": "the folder to back up was not found on your server",
    "secrets": "a credential could not be fetched",
    "timeout": "the backup took too long and was stopped",
    "interrupted": "the backup was interrupted",
    "repository": "the backup storage could not be written",
    "storage": "the backup storage could not be reached",
    "overlap": "the previous backup was still running",
}
OURS = "a problem on our side; we have been alerted"

COLOURS = {
    Health.OK: "#1a7f37",
    Health.NEVER: "#6e7781",
    Health.DRILL_FAILED: "#9a6700",
    Health.HELD: "#9a6700",
    Health.SUSPECT: "#bc4c00",
    Health.FAILING: "#cf222e",
    Health.CORRUPT: "#a40e26",
}

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1f2328}
main{max-width:44rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0}
p.sub{color:#59636e;margin:0 0 1rem}
section{background:#fff;border:1px solid #d1d9e0;border-left:.5rem solid var(--c);
border-radius:.4rem;padding:.8rem 1rem;margin:0 0 .9rem}
h2{font-size:1.15rem;margin:0 0 .4rem;display:flex;justify-content:space-between;gap:.5rem}
.badge{background:var(--c);color:#fff;border-radius:1rem;padding:0 .7rem;font-size:.9rem;
white-space:nowrap}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .9rem;margin:0}
dt{color:#59636e}dd{margin:0;overflow-wrap:anywhere}
.why{color:var(--c);font-weight:600;margin:.2rem 0 .5rem}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border:1px solid #d1d9e0;padding:.3rem .5rem;text-align:left;font-size:.95rem}
code{font-size:.85rem}
"""


def customer_page(customer: str, facts: list[JobFacts], now: datetime) -> str:
    """Return the HTML page of `customer`'s jobs as of `now`."""
    worst = min((f.health for f in facts), key=list(Health).index, default=Health.NEVER)
    sections = "".join(_section(f, now) for f in facts) or "<p>No resources are configured.</p>"
    summary = "All backups are healthy." if worst is Health.OK else "Some backups need attention."
    return _document(
        f"Backups of {customer}",
        f"<h1>Backups of {escape(customer)}</h1>"
        f'<p class="sub">{escape(summary)} As of {_when(now)}.</p>{sections}',
    )


def overview_page(facts: list[JobFacts], disabled: tuple[str, ...], now: datetime) -> str:
    """Return the operator's HTML overview of every job (and the disabled customers)."""
    rows = "".join(
        f"<tr><td>{escape(f.job.customer)}</td><td>{escape(f.job.resource)}</td>"
        f'<td style="color:{COLOURS[f.health]}">{escape(f.health.value)}</td>'
        f"<td>{_when(f.status.last_success if f.status else None)}</td>"
        f"<td>{_when(f.next_run)}</td><td>{f.receipts.waiting}</td></tr>"
        for f in facts
        if f.configured
    )
    counts = ", ".join(
        f"{n} {h.value}" for h in Health if (n := sum(1 for f in facts if f.health is h))
    )
    off = "".join(f"<li>{escape(name)}</li>" for name in disabled)
    body = (
        f"<h1>All customers</h1><p class='sub'>{escape(counts or 'no jobs')}. As of "
        f"{_when(now)}.</p><table><tr><th>customer</th><th>resource</th><th>health</th>"
        "<th>last success</th><th>next run</th><th>receipts waiting</th></tr>"
        f"{rows}</table>"
    )
    if off:
        body += f"<h2>Disabled customers (see the log)</h2><ul>{off}</ul>"
    return _document("All customers", body)


def _section(f: JobFacts, now: datetime) -> str:
    s = f.status
    rows = [
        ("Last backup", _last_run(f)),
        ("Last success", _ago(s.last_success if s else None, now)),
        ("Next backup", _ago(f.next_run, now) if f.next_run else "not scheduled"),
        ("Last restore test", _drill(f)),
    ]
    if s and (s.skipped or s.missed):
        rows.append(("Not run", f"{s.skipped} skipped (still running), {s.missed} missed"))
    if f.hold is not None:
        snapshot = f.hold.get("snapshot", "")[:8]
        rows.append(("Retention", f"held since {_stamp(f.hold.get('at'))}: snapshot {snapshot}"))
    head = f.receipts
    receipt = "none yet" if head.seq is None else f"#{head.seq} · {(head.digest or '')[:16]}"
    if head.waiting:
        receipt += f" ({head.waiting} waiting to be published)"
    rows.append(("Newest receipt", receipt))
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    why = _why(f)
    said = f'<p class="why">{escape(why)}</p>' if why else ""
    return (
        f'<section style="--c:{COLOURS[f.health]}"><h2><span>{escape(f.job.resource)}</span>'
        f'<span class="badge">{escape(f.health.value)}</span></h2>{said}<dl>{items}</dl>'
        "</section>"
    )


def _why(f: JobFacts) -> str:
    """Return the one sentence that says what is wrong, or nothing when all is well."""
    if f.health is Health.CORRUPT:
        return "A restore test found damaged backup data; we have been alerted."
    if f.health is Health.FAILING and f.status:
        return "The last backup failed: " + WORDS.get(f.status.reason or "", OURS) + "."
    if f.health is Health.SUSPECT:
        return "The last backup looked like files encrypted in place; it is kept apart."
    if f.health is Health.HELD:
        return "Old backups are kept until a suspect backup is reviewed."
    if f.health is Health.DRILL_FAILED:
        return "The last restore test could not run; backups go on."
    return ""


def _last_run(f: JobFacts) -> str:
    s = f.status
    if s is None or s.last_run is None:
        return "never"
    return f"{_stamp(s.last_run.isoformat())}: {s.result}"


def _drill(f: JobFacts) -> str:
    if f.drill is None:
        return "none yet"
    return f"{_stamp(f.drill.ended.isoformat())}: {f.drill.result}"


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = int((moment - now).total_seconds())
    span = _span(abs(seconds))
    return f"{_when(moment)} ({'in ' + span if seconds > 0 else span + ' ago'})"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _stamp(text: str | None) -> str:
    try:
        return _when(datetime.fromisoformat(text or ""))
    except ValueError:
        return "unknown"


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )

"""The commands that look into snapshots: ls, find, diff."""

import argparse
import json
import sys

from orchestrator import browse
from orchestrator.commands.context import as_of_time, launcher_on_runtime, load, size


def cmd_ls(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    launcher = launcher_on_runtime(settings)
    (chosen,) = browse.select(launcher, customer, resource, (args.snapshot, as_of_time(args.as_of)))
    items = browse.listing(launcher, customer, resource, chosen.id, args.path)
    if args.json:
        print(json.dumps({"snapshot": chosen.id, "time": chosen.time.isoformat(),
                          "entries": [vars(i) for i in items]}, indent=2))  # fmt: skip
        return 0
    for item in items:
        print(f"{item.type:<5} {item.size:>14} {item.mtime:<17} {shown(item.path)}")
    print(f"{len(items)} entries in snapshot {chosen.id[:8]} of {chosen.time:%Y-%m-%d %H:%M:%S}",
          file=sys.stderr)  # fmt: skip
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    found = browse.history(launcher_on_runtime(settings), customer, resource, args.pattern)
    if args.json:
        rows = [{"snapshot": f.snapshot, "time": f.time, **vars(f.item)} for f in found]
        print(json.dumps(rows, indent=2))
        return 0
    for f in found:
        print(f"{f.snapshot[:8]}  {f.time}  {f.item.type:<5} {f.item.size:>14}  "
              f"{f.item.mtime:<17} {shown(f.item.path)}")  # fmt: skip
    snapshots = len({f.snapshot for f in found})
    print(f"{len(found)} match(es) in {snapshots} snapshot(s)", file=sys.stderr)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    settings, customers = load()
    customer = customers.get(args.customer)
    resource = customer.resource(args.resource)
    launcher = launcher_on_runtime(settings)
    old, new = browse.select(launcher, customer, resource, (args.old, None), (args.new, None))
    changes = browse.difference(launcher, customer, resource, old.id, new.id)
    if args.json:
        print(json.dumps({"old": old.id, "new": new.id,
                          "changes": [vars(c) for c in changes]}, indent=2))  # fmt: skip
        return 0
    for c in changes:
        sizes = f"{_size(c.old_size)} -> {_size(c.new_size)}"
        print(f"{c.change:<8} {sizes:>24}  {shown(c.path)}")
    counts = {
        kind: sum(1 for c in changes if c.change == kind)
        for kind in ("added", "removed", "changed")
    }
    print(f"{old.id[:8]} -> {new.id[:8]}: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
          file=sys.stderr)  # fmt: skip
    return 0


def shown(path: str) -> str:
    """Return a path as a terminal may show it: itself, or quoted when it holds controls."""
    return path if path.isprintable() else json.dumps(path)


def _size(n: int | None) -> str:
    return "-" if n is None else size(n)

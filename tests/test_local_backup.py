"""End to end: real Docker, the real worker image and rustic, backing up a local directory."""

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.model import JobKey
from orchestrator.reporting.ledger import Ledger
from tests.conftest import ROOT, RUSTIC, Site
from tests.test_customer import BROKEN
from tests.trees import change_tree, diff, make_tree, manifest

pytestmark = pytest.mark.docker


def customer_text(password: str, source: Path, extra: str = "") -> str:
    return (
        f'SCHEDULE="0 * * * *"\nREPO_PASSWORD="{password}"\nRESOURCES=files\n'
        f'FILES_TYPE=local\nFILES_PATH="{source}"\n{extra}'
    )


def site_cli(site: Site) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli"]


def snapshot_ids(site: Site, customer: str) -> list[str]:

    done = site.cli("snapshots", customer, "files", "--json", check=True)
    return [s["id"] for s in json.loads(done.stdout)]


def test_round_trip_restores_every_snapshot_exactly(site: Site, unique: str) -> None:
    name = f"rt-{unique}"
    source = site.root / "source tree"
    make_tree(source)
    site.customer(name, customer_text("pw-round-trip", source, "KEEP_LAST=5\n"))

    first = site.cli("backup", name, check=True)
    assert f"{name}/files: success" in first.stdout
    before = manifest(source)
    change_tree(source)
    second = site.cli("backup", name, check=True)
    assert f"{name}/files: success" in second.stdout
    after = manifest(source)

    ids = snapshot_ids(site, name)
    assert len(ids) == 2
    for snapshot, expected in zip(ids, (before, after), strict=True):
        target = site.root / f"restore-{snapshot[:8]}"
        site.cli(
            "restore", name, "files", "--target", str(target), "--snapshot", snapshot, check=True
        )
        assert diff(expected, manifest(target)) == []

    site.cli("check", name, "files", "--read-data", check=True)

    # Hot holds metadata only; cold alone is a complete repository.
    hot = site.data / "hot" / name / "files"
    cold = site.data / "cold" / name / "files"
    hot_data = sum(p.stat().st_size for p in (hot / "data").rglob("*") if p.is_file())
    cold_data = sum(p.stat().st_size for p in (cold / "data").rglob("*") if p.is_file())
    assert cold_data > 60 * 1024 * 1024
    assert hot_data < 1024 * 1024, f"hot repo holds {hot_data} bytes of packs: data leaked into it"
    password = site.root / "pw"
    password.write_text("pw-round-trip")

    def cold_only(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [
            str(RUSTIC),
            "-r",
            str(cold),
            "--password-file",
            str(password),
            "--no-cache",
            "--no-progress",
            *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True)

    check = cold_only("check", "--read-data")
    assert check.returncode == 0 and "[ERROR]" not in check.stderr, check.stderr
    target = site.root / "restore-cold-only"
    restore = cold_only("restore", f"{ids[1]}:{source}", str(target))
    assert restore.returncode == 0, restore.stderr
    assert diff(after, manifest(target)) == []


def test_restore_refuses_a_non_empty_target(site: Site, unique: str) -> None:
    name = f"ne-{unique}"
    source = site.root / "src"
    source.mkdir()
    (source / "a").write_text("a")
    site.customer(name, customer_text("pw", source))
    site.cli("backup", name, check=True)
    target = site.root / "busy"
    target.mkdir()
    (target / "keep-me").write_text("precious")
    done = site.cli("restore", name, "files", "--target", str(target))
    assert done.returncode == 1
    assert "must be an empty directory" in done.stderr and "Traceback" not in done.stderr
    assert (target / "keep-me").read_text() == "precious"


def test_restore_before_any_snapshot_says_so(site: Site, unique: str) -> None:
    """Without a repository, and with one that holds no snapshot yet (made, then the first
    backup failed), the restore names the reason and leaves nothing behind."""
    name = f"none-{unique}"
    source = site.root / "src"
    source.mkdir()
    (source / "a").write_text("a")
    site.customer(name, customer_text("pw", source))
    target = site.root / "out"
    expected = f"{name}/files: no snapshot to restore yet"
    done = site.cli("restore", name, "files", "--target", str(target))
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (1, f"Error: {expected}")
    data = Path(site.env["UNSTOPPABLE_DATA_DIR"])
    (password := site.root / "pw").write_text("pw")
    hot, cold = (str(data / kind / name / "files") for kind in ("hot", "cold"))
    made = subprocess.run(
        [str(RUSTIC), "-r", cold, "--repo-hot", hot, "--password-file", str(password), "init"],
        capture_output=True,
    )
    assert made.returncode == 0, made.stderr
    done = site.cli("restore", name, "files", "--target", str(target))
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (1, f"Error: {expected}")
    assert not target.exists()  # made for the restore, removed again when nothing came
    site.cli("backup", name, check=True)
    done = site.cli("restore", name, "files", "--target", str(target), "--snapshot", "latest~3")
    assert done.returncode == 1 and "no snapshot to restore yet" not in done.stderr
    assert f"{name}/files: restore failed: " in done.stderr, done.stderr


def test_restore_refuses_a_symlink_target_and_makes_a_new_one_0700(site: Site, unique: str) -> None:
    name = f"ln-{unique}"
    source = site.root / "src"
    source.mkdir()
    (source / "a").write_text("a")
    site.customer(name, customer_text("pw", source))
    site.cli("backup", name, check=True)
    elsewhere = site.root / "etc"
    elsewhere.mkdir()
    link = site.root / "link"
    link.symlink_to(elsewhere)
    done = site.cli("restore", name, "files", "--target", str(link))
    assert done.returncode == 1
    assert f"--target {link}: is a symlink; a restore never follows one" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(elsewhere.iterdir()) == []

    target = site.root / "new" / "dir"
    old = os.umask(0)  # the CLI inherits it: the mode must not depend on it
    try:
        site.cli("restore", name, "files", "--target", str(target), check=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert (target / "a").read_text() == "a"


def test_a_worker_over_its_memory_limit_fails_the_run_with_reason_memory(
    site: Site, unique: str, slow_image: str
) -> None:
    name = f"mem-{unique}"
    source = site.root / "src"
    source.mkdir()
    (source / "a").write_text("a")
    (source / ".test-allocate").write_text(str(600 * 2**20))  # its rustic holds 600 MiB first
    site.customer(name, customer_text("pw", source))
    site.env.update(UNSTOPPABLE_WORKER_IMAGE=slow_image, UNSTOPPABLE_WORKER_MEMORY="256m")
    done = site.cli("backup", name)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "went over its memory limit (UNSTOPPABLE_WORKER_MEMORY)" in done.stdout
    runs = Ledger(site.data / "state").history.runs(JobKey.parse(f"{name}/files"))
    assert [(r.result, r.reason) for r in runs] == [("failure", "memory")]
    status = json.loads(site.cli("status", "--json", check=True).stdout)
    assert [(s["result"], s["reason"]) for s in status if s["customer"] == name] == [
        ("failure", "memory")
    ]

    (source / ".test-allocate").write_text(str(8 * 2**20))  # within the limit: a backup
    site.cli("backup", name, check=True)


def test_broken_customers_are_reported_and_a_valid_one_still_backs_up(
    site: Site, unique: str
) -> None:
    # The broken files back up /srv/web: opened, so each file is refused for its one flaw.
    site.env["UNSTOPPABLE_SOURCE_ROOTS"] += ",/srv"
    for file_name, text, _key, _words in BROKEN:
        (site.customers / file_name).write_text(text)
    source = site.root / "src"
    source.mkdir()
    (source / "data.txt").write_text("still backed up")
    good = f"good-{unique}"
    site.customer(good, customer_text("pw-good", source))

    done = site.cli("validate")
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(BROKEN)
    for (file_name, _text, key, words), line in zip(sorted(BROKEN), sorted(lines), strict=True):
        assert line.startswith(f"{site.customers / file_name}: {key}: ") and words in line, line
    assert good not in done.stdout

    backup = site.cli("backup", good)
    assert backup.returncode == 0, backup.stderr
    assert f"{good}/files: success" in backup.stdout


def test_missing_source_fails_with_its_reason(site: Site, unique: str) -> None:
    name = f"gone-{unique}"
    site.customer(name, customer_text("pw", site.root / "does-not-exist"))
    done = site.cli("backup", name)
    assert done.returncode == 1
    assert f"{name}/files: failure (source_missing)" in done.stdout
    assert not (site.root / "does-not-exist").exists(), "Docker must not create a missing source"


def test_secret_never_reaches_logs_inspect_or_process_list(site: Site, unique: str) -> None:
    secret = f"Very-Secret-{unique}-Password"
    name = f"sec-{unique}"
    source = site.root / "src"
    make_tree(source, big_mb=300)
    site.customer(name, customer_text(secret, source))
    seen: list[str] = []
    container = f"unstoppable_{name}_files"
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(
                subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            )
            inspect = subprocess.run(
                ["docker", "inspect", container], capture_output=True, text=True
            )
            if inspect.returncode == 0:
                seen.append("INSPECTED" + inspect.stdout)
                seen.append(
                    subprocess.run(
                        ["docker", "logs", container], capture_output=True, text=True
                    ).stderr
                )
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        done = site.cli("backup", name)
    finally:
        stop.set()
        watcher.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(s.startswith("INSPECTED") for s in seen), "the container was never seen running"
    everything = "\n".join(seen) + done.stdout + done.stderr
    assert secret not in everything
    assert not any((site.data / "state" / "secrets").iterdir()), "secret files left behind"


def test_rustic_stopped_by_a_signal_is_a_failure(site: Site, unique: str) -> None:
    name = f"sig-{unique}"
    source = site.root / "src"
    make_tree(source, big_mb=600)
    site.customer(name, customer_text("pw", source))
    container = f"unstoppable_{name}_files"

    def stop_when_running() -> None:
        for _ in range(300):
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Running}}", container],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if state == "true":
                time.sleep(1.0)
                subprocess.run(
                    ["docker", "kill", "--signal", "TERM", container], capture_output=True
                )
                return
            time.sleep(0.1)

    killer = threading.Thread(target=stop_when_running)
    killer.start()
    done = site.cli("backup", name)
    killer.join()
    assert done.returncode == 1
    assert f"{name}/files: failure (interrupted)" in done.stdout, done.stdout
    assert snapshot_ids(site, name) == []


def test_a_second_backup_of_a_running_job_is_skipped_not_queued(site: Site, unique: str) -> None:
    name = f"ovl-{unique}"
    source = site.root / "src"
    make_tree(source, big_mb=400)
    site.customer(name, customer_text("pw", source))
    events = subprocess.Popen(
        [
            "docker",
            "events",
            "--format",
            "{{.Status}} {{.Actor.Attributes.name}}",
            "--filter",
            f"label=unstoppable.customer={name}",
            "--filter",
            "type=container",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    first = subprocess.Popen(
        [*site_cli(site), "backup", name],
        env=site.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    container = f"unstoppable_{name}_files"
    for _ in range(300):
        running = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", container],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if running == "true":
            break
        time.sleep(0.05)
    second = site.cli("backup", name)
    out, err = first.communicate(timeout=600)
    time.sleep(0.5)
    events.terminate()
    log = events.communicate()[0].splitlines()

    assert first.returncode == 0, out + err
    assert second.returncode == 1
    assert f"{name}/files: skipped (overlap)" in second.stdout
    # From Docker's own events, not our word: never two workers of the job at once.
    running_now = 0
    for line in log:
        status = line.split()[0]
        running_now += {"start": 1, "die": -1}.get(status, 0)
        assert running_now <= 1, log
    assert sum(1 for line in log if line.startswith("start")) == 1, log
    assert len(snapshot_ids(site, name)) == 1


def test_forget_prunes_by_keep_values(site: Site, unique: str) -> None:
    name = f"keep-{unique}"
    source = site.root / "src"
    source.mkdir()
    site.customer(name, customer_text("pw", source, "KEEP_LAST=2\n"))
    # Below the retention floor's age every snapshot stays (test_history.py); past it,
    # KEEP_* decide.
    site.env["UNSTOPPABLE_MIN_KEEP_WITHIN"] = "1s"
    for i in range(3):
        (source / f"day{i}.txt").write_text(f"day {i}")
        time.sleep(1.5)
        site.cli("backup", name, check=True)
    # A backup forgets nothing: retention is the scheduled maintenance's.
    assert len(snapshot_ids(site, name)) == 3
    done = site.cli("prune", name, check=True)
    assert f"{name}/files prune: success: forget --prune finished" in done.stdout, done.stdout
    assert len(snapshot_ids(site, name)) == 2
    target = site.root / "restore"
    site.cli("restore", name, "files", "--target", str(target), check=True)
    assert sorted(p.name for p in target.iterdir()) == ["day0.txt", "day1.txt", "day2.txt"]


def test_a_leftover_exited_worker_does_not_block_the_job(site: Site, unique: str) -> None:
    name = f"left-{unique}"
    source = site.root / "src"
    source.mkdir()
    (source / "a").write_text("a")
    site.customer(name, customer_text("pw", source))
    # A worker whose CLI was killed: it exited, nobody collected it.
    subprocess.run(
        [
            "docker",
            "create",
            "--name",
            f"unstoppable_{name}_files",
            "--label",
            "unstoppable.managed=true",
            "--label",
            f"unstoppable.customer={name}",
            site.env["UNSTOPPABLE_WORKER_IMAGE"],
            "--version",
        ],
        check=True,
        capture_output=True,
    )
    done = site.cli("backup", name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "leftover" in done.stderr


def test_a_pack_no_index_names_leaves_a_clean_check_after_two_prunes(
    site: Site, unique: str
) -> None:
    """A backup cut off after its packs were written leaves packs no index names.

    Upstream rustic 0.11.4's prune marks such a pack for deletion with no blobs when it
    rewrites the index (`check`: "hot pack … is a data pack"), and the next prune that does
    within `--keep-delete` writes the mark again without its size ("size computed by index:
    36"): a drill would hold retention on a sound repository. The worker's rustic carries
    worker-image/rustic-patches/0005-prune-marks-keep-their-size.patch.
    """
    name = f"unindexed-{unique}"
    source = site.root / "src"
    source.mkdir()
    site.customer(name, customer_text("pw", source))
    hot = site.data / "hot" / name / "files"
    cold = site.data / "cold" / name / "files"

    def backup(label: str) -> None:
        (source / f"{label}.txt").write_text(label)
        site.cli("backup", name, check=True)

    backup("first")
    backup("second")  # two index files: the next prune merges them
    saved = {repo / kind: set((repo / kind).iterdir()) for repo in (hot, cold) for kind in KINDS}
    (source / "cut-off.bin").write_bytes(os.urandom(300_000))
    packs_before = set(cold.glob("data/*/*"))
    hot_before = set(hot.glob("data/*/*"))
    site.cli("backup", name, check=True)
    cut_off = set(cold.glob("data/*/*")) - packs_before
    cut_off_hot = set(hot.glob("data/*/*")) - hot_before
    assert len(cut_off) >= 2 and cut_off_hot, "its data pack, and its tree pack in both"
    # What a backup killed before its index and snapshot were saved leaves behind.
    for folder, kept in saved.items():
        for path in set(folder.iterdir()) - kept:
            path.unlink()
    # Other bytes, as many: no later backup needs the cut-off packs, and nothing looks shrunk.
    (source / "cut-off.bin").write_bytes(os.urandom(300_000))

    for label in ("third", "fourth"):
        done = site.cli("prune", name)
        assert f"{name}/files prune: success" in done.stdout, done.stdout + done.stderr
        # A drill may come between two prunes: the repository must read clean there too.
        checked = site.cli("check", name, "files", "--read-data")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        backup(label)  # one more index file: the next prune merges again
    assert all(path.exists() for path in cut_off), "marked, kept for rustic's --keep-delete"
    # A day later the marks fall due (`--keep-delete` shortened here): the cut-off packs go,
    # a tree pack's hot copy with them.
    password = site.root / "password"
    password.write_text("pw")
    repo = ["-r", str(cold), "--repo-hot", str(hot), "--password-file", str(password)]
    subprocess.run(
        [str(RUSTIC), *repo, "--no-cache", "prune", "--keep-delete", "0s"],
        check=True,
        capture_output=True,
    )
    assert not any(path.exists() for path in cut_off | cut_off_hot), "hot copies too"
    checked = site.cli("check", name, "files", "--read-data")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    target = site.root / "restore"
    site.cli("restore", name, "files", "--target", str(target), check=True)
    assert sorted(p.name for p in target.iterdir()) == [
        "cut-off.bin",
        "first.txt",
        "fourth.txt",
        "second.txt",
        "third.txt",
    ]


KINDS = ("index", "snapshots")

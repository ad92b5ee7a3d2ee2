"""`facesets store check STORE` and `facesets store backup STORE DEST`.

Both run in the clustering service that owns the store (a local one, started for the command,
when no address is given): the check reads the file read-only, so it answers for a store the
jobs refuse; the backup is SQLite's online backup, consistent while jobs write.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc

from facesets.orchestrator.connect import add_service_arguments, services


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="store_action", required=True, metavar="ACTION")
    check_help = (
        "SQLite's integrity check and facesets' own invariants (every face has its image, "
        "embedding sizes match the metadata, ...), one line per check; exits 1 on a problem"
    )
    check = actions.add_parser("check", help=check_help, description=check_help)
    check.add_argument("store", type=Path, help="the store file (e.g. OUT/faces.db)")
    add_service_arguments(check, "clustering")
    backup_help = (
        "a consistent copy of the store (SQLite's online backup: safe while services write), "
        "checked and renamed into place"
    )
    backup = actions.add_parser("backup", help=backup_help, description=backup_help)
    backup.add_argument("store", type=Path, help="the store file")
    backup.add_argument("dest", type=Path, help="the copy to write, or a folder to write it in")
    add_service_arguments(backup, "clustering")


def run(args: argparse.Namespace) -> int:
    store = Path(args.store).expanduser().absolute()
    if args.store_action == "check":
        roots = [store]
    else:
        dest = Path(args.dest).expanduser().absolute()
        roots = [store, dest if dest.is_dir() else dest.parent]
    try:
        with services(args, roots) as opened:
            client = opened.clustering()
            if args.store_action == "check":
                reply = client.check_store(str(store))
                for line in reply.checks:
                    print(f"{'ok     ' if line.ok else 'PROBLEM'}  {line.name}: {line.detail}")
                problems = sum(not line.ok for line in reply.checks)
                print(f"{args.store}: " + (f"{problems} problem(s)" if problems else "sound"))
                return 1 if problems else 0
            written = client.backup_store(str(store), str(dest))
    except grpc.RpcError as error:  # one line; no backup is made (exit 1, as a failed check)
        print(f"error: {error.details()}", file=sys.stderr)
        return 2 if args.store_action == "check" else 1
    print(f"backed up {args.store} to {written}")
    return 0


COMMANDS = {
    "store": (
        "check a face store (check STORE) or back it up while services run (backup STORE DEST)",
        add_arguments,
        run,
    )
}

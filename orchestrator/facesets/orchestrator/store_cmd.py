"""`facesets store check STORE` and `facesets store backup STORE DEST`.

They work on the store file where it lies, not through the clustering service: a check is
wanted most when the service refuses a damaged store (or is down), and a backup lands where
the person running it asks; SQLite's locking keeps the backup consistent while a service on
the same machine writes. For a store on another machine, run them there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facesets.clustering.store import StoreProblem
from facesets.clustering.store_tools import backup_store, check_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="store_action", required=True, metavar="ACTION")
    check_help = (
        "SQLite's integrity check and facesets' own invariants (every face has its image, "
        "embedding sizes match the metadata, ...), one line per check; exits 1 on a problem"
    )
    check = actions.add_parser("check", help=check_help, description=check_help)
    check.add_argument("store", type=Path, help="the store file (e.g. OUT/faces.db)")
    backup_help = (
        "a consistent copy of the store (SQLite's online backup: safe while services write), "
        "checked and renamed into place"
    )
    backup = actions.add_parser("backup", help=backup_help, description=backup_help)
    backup.add_argument("store", type=Path, help="the store file")
    backup.add_argument("dest", type=Path, help="the copy to write, or a folder to write it in")


def run(args: argparse.Namespace) -> int:
    try:
        if args.store_action == "check":
            lines = check_store(args.store)
            for line in lines:
                print(line)
            problems = sum(not line.ok for line in lines)
            print(f"{args.store}: " + (f"{problems} problem(s)" if problems else "sound"))
            return 1 if problems else 0
    except StoreProblem as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        dest = backup_store(args.store, args.dest)
    except StoreProblem as problem:  # no backup made: one line, like a failed check
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"backed up {args.store} to {dest}")
    return 0


COMMANDS = {
    "store": (
        "check a face store (check STORE) or back it up while services run (backup STORE DEST)",
        add_arguments,
        run,
    )
}

"""The `facesets` command loads only the module of the command it runs: the table of commands
names every command of every module, and a command starts without the others' dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

from facesets.orchestrator import cli


def test_the_table_names_every_command_of_every_module_once() -> None:
    loaders = set(cli.COMMAND_MODULES.values())
    defined = {name: loader for loader in loaders for name in loader()}
    assert defined == cli.COMMAND_MODULES  # none left out, none mapped to another module
    full = cli.build_parser()
    listed = next(a for a in full._actions if a.dest == "command").choices
    assert list(listed) == ["serve", *cli.COMMAND_MODULES]


def test_a_command_imports_its_own_module_and_no_other() -> None:
    probe = (
        "import json, sys\n"
        "from facesets.orchestrator import cli\n"
        "args = cli.build_parser(cli.chosen_command(sys.argv[1:])).parse_args(sys.argv[1:])\n"
        "print(json.dumps([args.command, sorted(sys.modules)]))\n"
    )
    argv = ["--log-level", "info", "config", "show"]
    done = subprocess.run(
        [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    command, modules = json.loads(done.stdout)
    assert command == "config" and "facesets.orchestrator.config_cmd" in modules
    for other in (
        "facesets.orchestrator.immich_cmd",
        "facesets.orchestrator.review.command",
        "facesets.orchestrator.video_cmd",
        "facesets.orchestrator.embed",
        "facesets.serve",
        "httpx",
    ):
        assert other not in modules, other

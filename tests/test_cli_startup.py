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


def test_a_bad_setting_in_the_environment_is_said_without_a_traceback() -> None:
    """The command's settings load as it starts: a value its setting does not take was a
    traceback at import, for every command."""
    import os

    env = {**os.environ, "FACESETS_STOP_DEADLINE_S": "soon", "FACESETS_IMMICH__WORKERS": "many"}
    done = subprocess.run(
        [sys.executable, "-m", "facesets.orchestrator.cli", "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "error: bad setting: FACESETS_STOP_DEADLINE_S=soon: Input should be a valid number" in (
        done.stderr
    )
    assert "FACESETS_IMMICH__WORKERS=many: Input should be a valid integer" in done.stderr

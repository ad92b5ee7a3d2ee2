"""facesets.toml: read by the command and by `facesets serve`; the environment wins over the
file and a flag over both; `facesets config show` says where each value came from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import free_port

from facesets.client import ClusteringClient, Endpoint
from services import FACESETS, run_facesets, wait_for

TOKEN = "household-token"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESETS_")}
    env["FACESETS_SHARED"] = os.environ.get("FACESETS_SHARED", "")
    env["XDG_CONFIG_HOME"] = extra.pop("XDG_CONFIG_HOME", "/nonexistent")
    return {**env, **extra}


def test_serve_and_the_command_run_from_the_config_file_alone(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    config = tmp_path / "facesets.toml"
    config.write_text(
        f'clustering = "127.0.0.1:{port}"\n'
        'token_file = "token"\n'  # relative: from the file's folder
        f'clustering_listen = "0.0.0.0:{port}"\n'
        f'roots = ["{tmp_path}"]\n'
    )
    ready = tmp_path / "ready"
    log = (tmp_path / "serve.log").open("wb")
    service = subprocess.Popen(
        [*FACESETS, "--config", str(config), "serve", "clustering", "--ready-file", str(ready)],
        stdout=log, stderr=subprocess.STDOUT, env=_env(),
    )  # fmt: skip
    try:
        wait_for(lambda: ready.exists() or service.poll() is not None, 120, "serving")
        assert service.poll() is None, (tmp_path / "serve.log").read_text()
        assert ready.read_text().strip().endswith(f":{port}")
        # The service took the token and the roots from the file.
        store = tmp_path / "faces.db"
        client = ClusteringClient(Endpoint(f"127.0.0.1:{port}", token_file=tmp_path / "token"))
        assert client.open_store(str(store)).schema_version >= 1
        client.close()
        # The command finds the address and the token in the file ($FACESETS_CONFIG here).
        done = run_facesets("store", "check", str(store), env=_env(FACESETS_CONFIG=str(config)))
        assert done.returncode == 0, done.stderr
        # The environment wins over the file ...
        wrong = f"127.0.0.1:{free_port()}"
        env = _env(FACESETS_CONFIG=str(config), FACESETS_CLUSTERING=wrong)
        refused = run_facesets("store", "check", str(store), env=env, timeout=60)
        assert refused.returncode != 0 and wrong in refused.stderr, refused.stderr
        # ... and a flag over the environment.
        flagged = run_facesets(
            "store", "check", str(store), "--clustering", f"127.0.0.1:{port}", env=env
        )
        assert flagged.returncode == 0, flagged.stderr
        # `config show`: each value with its source.
        shown = run_facesets("config", "show", "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        settings = json.loads(shown.stdout)["settings"]
        assert settings["clustering"] == {"value": wrong, "source": "env FACESETS_CLUSTERING"}
        assert settings["token_file"] == {
            "value": str(tmp_path / "token"),
            "source": f"file {config.resolve()}",
        }
        assert settings["inference"]["source"] == "default"
        text = run_facesets("config", "show", env=env).stdout
        assert f"config file: {config.resolve()}" in text
        assert TOKEN not in text and TOKEN not in shown.stdout
    finally:
        service.terminate()
        service.wait(timeout=30)
        log.close()


def test_the_user_config_folder_is_found_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "xdg" / "facesets"
    folder.mkdir(parents=True)
    (folder / "facesets.toml").write_text('inference = ["10.0.0.5:50051", "10.0.0.6:50051"]\n')
    env = _env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    shown = json.loads(run_facesets("config", "show", "--json", env=env).stdout)
    assert shown["settings"]["inference"]["value"] == "10.0.0.5:50051,10.0.0.6:50051"
    (folder / "facesets.toml").write_text('inferense = "10.0.0.5:50051"\n')
    bad = run_facesets("config", "show", env=env)
    assert bad.returncode == 2 and "unknown key(s) inferense" in bad.stderr, bad.stderr
    missing = run_facesets("--config", str(tmp_path / "none.toml"), "config", "show", env=env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    a_folder = run_facesets("--config", str(folder), "config", "show", env=env)
    assert a_folder.returncode == 2 and f"{folder} (from --config) is a folder" in a_folder.stderr

"""The services' typed settings: every field is set by its FACESETS_GROUP__FIELD variable (and
the model pack and CLIP folder by their old names), a real service follows them, and a value
out of range stops `facesets serve` / `facesets-serve` at once with the variable named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from conftest import free_port
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from facesets.client import Endpoint, InferenceClient
from facesets.common import settings
from facesets.orchestrator.settings import CliSettings
from facesets.shared.config import KEYS
from services import ServiceProcess, run_facesets

SERVE: list[str] = [sys.executable, "-m", "facesets.serve"]  # the facesets-serve entry point


@pytest.fixture(autouse=True)
def fresh_settings() -> typing.Iterator[None]:
    """Each test reads the environment it sets; later tests read theirs."""
    settings.reset()
    yield
    settings.reset()


def _within(value: float, info: FieldInfo) -> bool:
    for rule in info.metadata:
        if isinstance(rule, annotated_types.Ge) and not value >= rule.ge:  # type: ignore[operator]
            return False
        if isinstance(rule, annotated_types.Gt) and not value > rule.gt:  # type: ignore[operator]
            return False
        if isinstance(rule, annotated_types.Le) and not value <= rule.le:  # type: ignore[operator]
            return False
        if isinstance(rule, annotated_types.Lt) and not value < rule.lt:  # type: ignore[operator]
            return False
    return True


def _other(info: FieldInfo, tmp_path: Path) -> tuple[str, Any]:
    """A valid value unlike the default: (what the variable says, what the field then holds)."""
    default = info.get_default(call_default_factory=True)
    kind = info.annotation
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Literal:
        choice = next(c for c in args if c != default)
        return str(choice), choice
    if kind is bool:
        return str(not default).lower(), not default
    if kind is int:
        value = next(v for v in (default + 1, default - 1) if _within(v, info))
        return str(value), value
    if kind is float:
        steps = (default + 0.05, default - 0.05, default * 1.5, default * 0.5)
        value = next(v for v in steps if v != default and _within(v, info))
        return repr(value), value
    if kind is str:
        return default + "x", default + "x"
    if kind is Path or any(Path in (a, *typing.get_args(a)) for a in args):  # a folder
        path = tmp_path / "somewhere"
        return str(path), path
    if typing.get_origin(kind) is tuple:
        element = typing.get_args(args[0])[0] if typing.get_args(args[0]) else args[0]
        if typing.get_origin(args[0]) is typing.Literal:
            value: tuple[Any, ...] = (typing.get_args(args[0])[-1],)
        elif element is str:
            value = default[:1]
        else:
            value = tuple(round(v * 0.9, 4) for v in default)
        return json.dumps(list(value)), value
    raise AssertionError(f"no test value for a {kind} setting: add one to _other()")


def _value(obj: Any, loc: tuple[str, ...]) -> Any:
    for name in loc:
        obj = getattr(obj, name)
    return obj


@pytest.mark.parametrize("cls", settings.SETTINGS_CLASSES, ids=lambda c: c.__name__)
def test_every_setting_is_set_by_its_variable(
    cls: type[BaseSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = settings.fields(cls)
    assert len(every) > 5
    expected = {}
    for loc, info in every.items():
        assert info.description, f"{loc} has no description"
        text, value = _other(info, tmp_path)
        monkeypatch.setenv(settings.env_name(*loc), text)
        expected[loc] = value
    loaded = cls()
    for loc, value in expected.items():
        assert _value(loaded, loc) == value, (settings.env_name(*loc), _value(loaded, loc))
    # ... and without the variables, every default is back.
    for loc in every:
        monkeypatch.delenv(settings.env_name(*loc))
    plain = cls()
    for loc, info in every.items():
        if loc != ("model_root",):  # the default, expanded
            assert _value(plain, loc) == info.get_default(call_default_factory=True), loc


def test_thresholds_declare_their_range() -> None:
    """Similarities, shares, limits and counts: each numeric setting has at least a bound."""
    for cls in settings.SETTINGS_CLASSES:
        for loc, info in settings.fields(cls).items():
            if info.annotation in (int, float):
                bounds = (annotated_types.Ge, annotated_types.Gt, annotated_types.Le)
                assert any(isinstance(m, bounds) for m in info.metadata), loc


def test_variable_names_are_unique_and_clear_of_config_keys() -> None:
    """No two objects read one variable for different things, and no group takes a name that a
    facesets.toml key (FACESETS_CLUSTERING: an address) or the command's settings use."""
    seen: dict[str, str] = {}
    for cls in settings.SETTINGS_CLASSES:
        for loc in settings.fields(cls):
            name = settings.env_name(*loc)
            owner = seen.setdefault(name, cls.__name__)
            # The decode limits: the same variables, the inference flags' defaults.
            assert owner == cls.__name__ or loc[0] == "decode", name
    shared_meaning = {"model_root", "model_pack"}
    keys = {key.name for key in KEYS} | set(CliSettings.model_fields)
    for cls in settings.SETTINGS_CLASSES:
        for name in cls.model_fields:
            assert name not in keys - shared_meaning, f"{cls.__name__}.{name} is a config key"


def test_the_model_pack_and_clip_folder_keep_their_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESETS_MODEL_ROOT", str(tmp_path / "models"))
    monkeypatch.setenv("FACESETS_MODEL_PACK", "facepack-mini")
    monkeypatch.setenv("FACESETS_CLIP_MODEL", "RN50")
    monkeypatch.setenv("FACESETS_CLIP_PRETRAINED", "openai")
    monkeypatch.setenv("FACESETS_CLIP_CACHE", "~/clip-cache")
    monkeypatch.setenv("FACESETS_CLIP_DIR", str(tmp_path / "clip"))
    loaded = settings.inference()
    assert loaded.model_root == tmp_path / "models" and loaded.model_pack == "facepack-mini"
    assert (loaded.clip.model, loaded.clip.pretrained) == ("RN50", "openai")
    assert loaded.clip_cache_dir == Path("~/clip-cache").expanduser()
    assert loaded.clip.dir == tmp_path / "clip"
    # The grouped name wins over the old one.
    monkeypatch.setenv("FACESETS_CLIP__MODEL", "ViT-B-32")
    settings.reset()
    assert settings.inference().clip.model == "ViT-B-32"


def test_a_real_inference_service_follows_its_variables(
    tmp_path: Path, model_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`facesets serve inference` started with no flags for these: the pack from the old
    variables, the detector size, pixel limit, message limit, workers, OpenCV threads and CLIP
    names from the grouped ones (the shared group and the inference object both)."""
    env = {
        "FACESETS_MODEL_ROOT": str(model_root),
        "FACESETS_MODEL_PACK": "facepack-mini",
        "FACESETS_DETECTION__INPUT_SIZE": "512",
        "FACESETS_DECODE__MAX_IMAGE_PIXELS": "5000000",
        "FACESETS_SERVER__MAX_MESSAGE_BYTES": str(8 << 20),
        "FACESETS_RUNTIME__IMAGE_WORKERS": "1",
        "FACESETS_RUNTIME__OPENCV_THREADS": "3",
        "FACESETS_RUNTIME__PROVIDERS": '["cpu"]',
        "FACESETS_CLIP_MODEL": "RN50",
        "FACESETS_CLIP__PRETRAINED": "openai",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    service = ServiceProcess("inference", free_port(), tmp_path / "inference.log").start()
    client = InferenceClient(Endpoint(service.address))
    try:
        info = client.info()
    finally:
        client.close()
        service.stop()
    assert info.detector_size == 512
    assert info.max_image_pixels == 5_000_000
    assert info.max_message_bytes == 8 << 20
    assert info.image_workers == 1
    assert info.opencv_threads == 3  # more than this machine's cores: asked, not guessed
    assert (info.clip_model, info.clip_pretrained) == ("RN50", "openai")
    assert any("det_scrfd" in model for model in info.models), list(info.models)


BAD = [
    ("clustering", "FACESETS_NEIGHBOURS__ANN_NPROBE", "0", "greater than or equal to 1"),
    ("export", "FACESETS_QUALITY__WEIGHTS__SIZE", "lots", "valid number"),
    ("clustering", "FACESETS_AGE__PROBE_THRESHOLDS", "0.3,0.4", "not JSON"),
    ("inference", "FACESETS_DETECTION__SCORE_THRESHOLD", "1.5", "less than or equal to 1"),
]


@pytest.mark.parametrize(("service", "name", "value", "said"), BAD)
def test_a_bad_value_stops_serve_at_once_naming_its_variable(
    service: str, name: str, value: str, said: str, tmp_path: Path
) -> None:
    """Both entry points, before any model is read: the message names the variable and the
    value, without a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESETS_")}
    env[name] = value
    listen = ("--listen", f"127.0.0.1:{free_port()}")
    serve = [*SERVE, service, *listen, "--no-config"]
    results = [
        run_facesets("serve", service, *listen, "--no-config", timeout=60, env=env),
        subprocess.run(serve, capture_output=True, text=True, timeout=60, env=env),
    ]
    for result in results:
        assert result.returncode != 0
        assert f"{name}={value}" in result.stderr and said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert "bad setting" in result.stderr.splitlines()[-1], result.stderr

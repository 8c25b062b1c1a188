"""No Docker engine runs here, so deploy/ is checked statically: the files parse, and
every command and variable they use exists."""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import click
import pytest
import yaml

import kwai_bridge.cli as cli
from kwai_bridge.settings import SETTINGS_DOC
from kwai_bridge.web.serving import gunicorn_options

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KNOWN_VARIABLES = {row[0] for row in SETTINGS_DOC}


def _cli_path_exists(words: list[str]) -> bool:
    """True when `kwai-bridge <words...>` names a real command (what follows it is its arguments)."""
    node = cli.main
    for word in words:
        if not isinstance(node, click.Group):
            return True
        if word not in node.commands:
            return False
        node = node.commands[word]
    return not isinstance(node, click.Group)


def test_compose_parses_and_runs_known_commands():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "db"} <= set(services)
    for name, service in services.items():
        command = service.get("command")
        if command is None:
            continue
        assert command[0] == "kwai-bridge", name
        assert _cli_path_exists(command[1:]), f"{name}: unknown command {command}"
        for key in service.get("environment", {}):
            if key.startswith("KWAI_BRIDGE_"):
                assert key in KNOWN_VARIABLES, f"{name}: unknown variable {key}"


@pytest.mark.parametrize("unit", ["kwai-bridge-web.service", "kwai-bridge-worker.service"])
def test_systemd_units_run_known_commands(unit):
    text = (DEPLOY / unit).read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", text, re.M).group(1)
    words = shlex.split(exec_start)
    assert words[0].endswith("/kwai-bridge")
    assert _cli_path_exists(words[1:]), exec_start


def test_dockerfile_runs_known_command_and_copies_every_package():
    text = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.+\])$", text, re.M).group(1)
    words = yaml.safe_load(cmd)
    assert words[0] == "kwai-bridge" and _cli_path_exists(words[1:])
    for package in ("adapters", "kwai_bridge"):
        assert f"COPY {package} " in text, package
    for variable in re.findall(r"(KWAI_BRIDGE_[A-Z_]+)=", text):
        assert variable in KNOWN_VARIABLES, variable


def test_pyproject_installs_every_package():
    root = DEPLOY.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(root).parts)
             for top in ("adapters", "kwai_bridge") for init in (root / top).rglob("__init__.py")}
    assert found <= listed, f"not installed: {sorted(found - listed)}"


def test_env_example_lists_exactly_the_known_variables():
    text = (DEPLOY / "env.example").read_text()
    named = set(re.findall(r"^#?\s*(KWAI_BRIDGE_[A-Z_]+)=", text, re.M))
    assert named == KNOWN_VARIABLES


def _gunicorn_conf(monkeypatch, **environ: str) -> dict:
    for name in ("PORT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    namespace: dict = {}
    exec(compile((DEPLOY / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    return namespace


def test_gunicorn_conf_loads_with_gevent_workers(monkeypatch):
    from gunicorn.util import load_class
    from gunicorn.workers.ggevent import GeventWorker

    from kwai_bridge.web.serving import HEAD_TIMEOUT

    namespace = _gunicorn_conf(monkeypatch)
    assert issubclass(load_class(namespace["worker_class"]), GeventWorker)
    assert namespace["keepalive"] == HEAD_TIMEOUT, "the time a client has for its request head"
    assert namespace["workers"] >= 1
    assert namespace["bind"].endswith(":8000")
    assert namespace["wsgi_app"] == "server:create_app()"


def test_gunicorn_conf_holds_what_serve_applies_and_gunicorn_knows(monkeypatch):
    from gunicorn.config import Config

    namespace = _gunicorn_conf(monkeypatch, PORT="9100", WEB_CONCURRENCY="3")
    options = gunicorn_options(host="0.0.0.0", port=9100, workers=3)
    assert {name: namespace[name] for name in options} == options
    assert (namespace["bind"], namespace["workers"]) == ("0.0.0.0:9100", 3)
    assert set(options) <= set(Config().settings), "a setting gunicorn would silently ignore"


def test_unknown_command_would_be_caught():
    assert not _cli_path_exists(["serv"])
    assert not _cli_path_exists(["events", "lst"])
    assert _cli_path_exists(["events", "list", "--json"])


def test_a_web_worker_moves_what_it_loaded_out_of_the_collectors_reach():
    # A full collection walks every tracked object and stops the worker's greenlets
    # meanwhile; what the loaded app holds for good is frozen once, when the worker starts.
    import gc

    hook = gunicorn_options()["post_worker_init"]
    assert gc.get_freeze_count() == 0
    try:
        hook(None)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()

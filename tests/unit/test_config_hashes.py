"""compose's config hashes are asked once per model, then remembered under a digest of
everything they depend on (`reconciler.config_hashes`)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from reconciler import processes
from reconciler.config_hashes import config_hashes, hashes_path
from reconciler.docker import adapter as adapter_module
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig
from reconciler.processes import Finished
from tests.facts.fake_docker import compose_plugin


class Compose:
    """Stands in for `processes.run`: answers `config --hash` from the model on stdin."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **kwargs: object) -> Finished:
        self.calls.append(list(argv))
        model = json.loads(str(kwargs["stdin"]))
        out = "".join(f"{name} h-{spec['image']}\n" for name, spec in model["services"].items())
        return Finished(tuple(argv), 0, out, "", 0.0)


def model(image: str) -> ComposeConfig:
    text = json.dumps({"name": "p", "services": {"web": {"image": image}}})
    return ComposeConfig(project="p", services={}, resolved=text)


@pytest.fixture
def compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Compose:
    fake = Compose()
    monkeypatch.setattr(processes, "run", fake)
    compose_plugin(tmp_path, monkeypatch)
    return fake


def adapter(tmp_path: Path, project: str = "p") -> DockerAdapter:
    compose_file = tmp_path / "compose.yml"
    compose_file.write_text("services: {}\n")
    return DockerAdapter(compose_file, project)


def test_a_model_seen_before_costs_no_call(tmp_path: Path, compose: Compose) -> None:
    assert config_hashes(adapter(tmp_path), model("web:1")) == {"web": "h-web:1"}
    assert len(compose.calls) == 1
    again = adapter(tmp_path)  # another run
    assert config_hashes(again, model("web:1")) == {"web": "h-web:1"}
    assert len(compose.calls) == 1
    assert again.calls == []


def test_another_model_is_asked_and_both_are_kept(tmp_path: Path, compose: Compose) -> None:
    config_hashes(adapter(tmp_path), model("web:1"))
    assert config_hashes(adapter(tmp_path), model("web:2")) == {"web": "h-web:2"}
    assert config_hashes(adapter(tmp_path), model("web:1")) == {"web": "h-web:1"}
    assert len(compose.calls) == 2


def test_a_changed_compose_binary_is_asked_again(tmp_path: Path, compose: Compose) -> None:
    config_hashes(adapter(tmp_path), model("web:1"))
    plugin = tmp_path / "plugins" / "docker" / "cli-plugins" / "docker-compose"
    plugin.write_text("compose 2, another size")
    config_hashes(adapter(tmp_path), model("web:1"))
    assert len(compose.calls) == 2


def test_the_project_directory_is_part_of_the_key(tmp_path: Path, compose: Compose) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config_hashes(adapter(tmp_path / "a"), model("web:1"))
    config_hashes(adapter(tmp_path / "b"), model("web:1"))
    assert len(compose.calls) == 2


def test_no_compose_binary_found_means_no_memory(
    tmp_path: Path, compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapter_module, "_PLUGIN_ROOTS", ())
    config_hashes(adapter(tmp_path), model("web:1"))
    config_hashes(adapter(tmp_path), model("web:1"))
    assert len(compose.calls) == 2
    assert not hashes_path("p").exists()


def test_an_unreadable_file_is_asked_again_and_rewritten(tmp_path: Path, compose: Compose) -> None:
    path = hashes_path("p")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert config_hashes(adapter(tmp_path), model("web:1")) == {"web": "h-web:1"}
    assert json.loads(path.read_text())["version"] == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_only_the_last_models_are_kept(tmp_path: Path, compose: Compose) -> None:
    for tag in range(12):
        config_hashes(adapter(tmp_path), model(f"web:{tag}"))
    assert len(json.loads(hashes_path("p").read_text())["models"]) == 8
    config_hashes(adapter(tmp_path), model("web:11"))
    assert len(compose.calls) == 12
    config_hashes(adapter(tmp_path), model("web:0"))  # forgotten
    assert len(compose.calls) == 13


def test_a_model_without_text_is_not_hashed(tmp_path: Path, compose: Compose) -> None:
    empty = ComposeConfig(project="p", services={}, resolved="")
    assert config_hashes(adapter(tmp_path), empty) == {}
    assert compose.calls == []

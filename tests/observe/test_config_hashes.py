"""compose's config hashes are asked once per model, then remembered under a digest of
everything they depend on (`reconciler.observe.config_hashes`); a remembered hash a container's label
contradicts is asked again, never trusted over compose."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.docker import adapter as adapter_module
from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig, ContainerFacts, ServiceConfig
from reconciler.observe.config_hashes import config_hashes, hashes_path
from reconciler.reconcile import loop as reconcile
from reconciler.runtime import processes
from reconciler.runtime.processes import Finished
from reconciler.state import load_state
from tests.facts import fake_docker
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
    """A model hashed once is served from the record by the next run, with no docker call."""
    assert config_hashes(adapter(tmp_path), model("web:1")) == {"web": "h-web:1"}
    assert len(compose.calls) == 1
    again = adapter(tmp_path)  # another run
    assert config_hashes(again, model("web:1")) == {"web": "h-web:1"}
    assert len(compose.calls) == 1
    assert again.calls == []


def test_another_model_is_asked_and_both_are_kept(tmp_path: Path, compose: Compose) -> None:
    """Two models are both remembered: switching back costs no call."""
    config_hashes(adapter(tmp_path), model("web:1"))
    assert config_hashes(adapter(tmp_path), model("web:2")) == {"web": "h-web:2"}
    assert config_hashes(adapter(tmp_path), model("web:1")) == {"web": "h-web:1"}
    assert len(compose.calls) == 2


def test_a_changed_compose_binary_is_asked_again(tmp_path: Path, compose: Compose) -> None:
    """Another compose binary (size changed) is another key: asked again."""
    config_hashes(adapter(tmp_path), model("web:1"))
    plugin = tmp_path / "plugins" / "docker" / "cli-plugins" / "docker-compose"
    plugin.write_text("compose 2, another size")
    config_hashes(adapter(tmp_path), model("web:1"))
    assert len(compose.calls) == 2


def test_the_project_directory_is_part_of_the_key(tmp_path: Path, compose: Compose) -> None:
    """The same model in another project directory is asked again."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config_hashes(adapter(tmp_path / "a"), model("web:1"))
    config_hashes(adapter(tmp_path / "b"), model("web:1"))
    assert len(compose.calls) == 2


def test_no_compose_binary_found_means_no_memory(
    tmp_path: Path, compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no compose binary to digest, nothing is remembered and every call asks compose."""
    monkeypatch.setattr(adapter_module, "_PLUGIN_ROOTS", ())
    config_hashes(adapter(tmp_path), model("web:1"))
    config_hashes(adapter(tmp_path), model("web:1"))
    assert len(compose.calls) == 2
    assert not hashes_path("p").exists()


def test_an_unreadable_file_is_asked_again_and_rewritten(tmp_path: Path, compose: Compose) -> None:
    """A record that is not JSON is asked again and rewritten, versioned and 0600."""
    path = hashes_path("p")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert config_hashes(adapter(tmp_path), model("web:1")) == {"web": "h-web:1"}
    assert json.loads(path.read_text())["version"] == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_only_the_last_models_are_kept(tmp_path: Path, compose: Compose) -> None:
    """Only the last 8 models are kept; an older one is asked again."""
    for tag in range(12):
        config_hashes(adapter(tmp_path), model(f"web:{tag}"))
    assert len(json.loads(hashes_path("p").read_text())["models"]) == 8
    config_hashes(adapter(tmp_path), model("web:11"))
    assert len(compose.calls) == 12
    config_hashes(adapter(tmp_path), model("web:0"))  # forgotten
    assert len(compose.calls) == 13


def test_a_model_without_text_is_not_hashed(tmp_path: Path, compose: Compose) -> None:
    """A model with no resolved text has no hashes and costs no call."""
    empty = ComposeConfig(project="p", services={}, resolved="")
    assert config_hashes(adapter(tmp_path), empty) == {}
    assert compose.calls == []


# --- the memory is evidence, never authority over compose -------------------------------------


def labelled(service: str, config_hash: str, *, oneoff: bool = False) -> ContainerFacts:
    """A container of `service` whose config-hash label is `config_hash`."""
    return ContainerFacts(
        f"id-{service}", f"p-{service}-1", service, "running", None, 0, config_hash, "i", oneoff
    )


def web_model(image: str) -> ComposeConfig:
    """`model(image)` with its service known, as compose's parsed model has it."""
    return dataclasses.replace(
        model(image), services={"web": ServiceConfig(name="web", image=image)}
    )


def poison(hashes: dict[str, str]) -> None:
    """Replace every remembered model's hashes with `hashes` (a wrong cache)."""
    path = hashes_path("p")
    data = json.loads(path.read_text())
    data["models"] = {key: dict(hashes) for key in data["models"]}
    path.write_text(json.dumps(data))


def test_a_remembered_hash_a_container_contradicts_is_asked_again_and_replaced(
    tmp_path: Path, compose: Compose
) -> None:
    """A wrong entry a container contradicts: compose asked once more, its answer replaces the entry (warned) and serves the next call."""
    config = web_model("web:1")
    config_hashes(adapter(tmp_path), config)
    poison({"web": "wrong"})
    current = [labelled("web", "h-web:1")]
    with capture_logs() as events:
        assert config_hashes(adapter(tmp_path), config, current) == {"web": "h-web:1"}
    assert len(compose.calls) == 2
    (warning,) = [e for e in events if e["log_level"] == "warning"]
    assert warning["event"] == "remembered config hashes differ from compose's; replaced"
    assert (warning["path"], warning["services"]) == (str(hashes_path("p")), ["web"])
    assert config_hashes(adapter(tmp_path), config, current) == {"web": "h-web:1"}
    assert len(compose.calls) == 2


def test_a_drifted_container_costs_one_call_and_leaves_a_right_entry_alone(
    tmp_path: Path, compose: Compose
) -> None:
    """A container made from another model: compose confirms the entry; nothing is rewritten."""
    config = web_model("web:1")
    config_hashes(adapter(tmp_path), config)
    before = hashes_path("p").read_bytes()
    with capture_logs() as events:
        assert config_hashes(adapter(tmp_path), config, [labelled("web", "old")]) == {
            "web": "h-web:1"
        }
    assert len(compose.calls) == 2
    assert [e for e in events if e["log_level"] == "warning"] == []
    assert hashes_path("p").read_bytes() == before


def test_an_entry_leaving_out_a_service_with_a_container_is_asked_again(
    tmp_path: Path, compose: Compose
) -> None:
    """No remembered hash for a service would compare nothing: compose is asked."""
    config = web_model("web:1")
    config_hashes(adapter(tmp_path), config)
    poison({})
    assert config_hashes(adapter(tmp_path), config, [labelled("web", "h-web:1")]) == {
        "web": "h-web:1"
    }
    assert len(compose.calls) == 2


def test_one_offs_unlabelled_and_unknown_services_do_not_dispute_the_memory(
    tmp_path: Path, compose: Compose
) -> None:
    """`compose run` containers, containers without the label, services outside the model."""
    config = web_model("web:1")
    config_hashes(adapter(tmp_path), config)
    others = [
        labelled("web", "other", oneoff=True),
        dataclasses.replace(labelled("web", "x"), config_hash=None),
        labelled("gone", "other"),
        labelled("web", "h-web:1"),
    ]
    assert config_hashes(adapter(tmp_path), config, others) == {"web": "h-web:1"}
    assert len(compose.calls) == 1


# --- the same, through a whole plan and apply on recorded docker output ---------------------------

STACK = Path(fake_docker.__file__).parent / "mutfx_stack"


def recorded_hashes() -> dict[str, str]:
    """What compose answered `config --hash` for the mutfx stack (scenarios/converged/)."""
    text = (fake_docker.SCENARIOS / "converged" / "02-compose-config-hash.stdout").read_text()
    return dict(line.split() for line in text.splitlines())


@pytest.fixture
def remembered_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The converged mutfx stack behind the replaying docker, with its config hashes remembered
    (under a fixed key: the fake's compose has no binary to digest) but wrong."""
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    log = fake_docker.on_path("converged", tmp_path, monkeypatch, root=directory)
    monkeypatch.setattr(DockerAdapter, "resolved_hashes_key", lambda self, config: "key")
    path = hashes_path("mutfxrb")
    path.parent.mkdir(parents=True, exist_ok=True)
    wrong = {"api": "0" * 64, "db": "1" * 64}
    path.write_text(json.dumps({"version": 1, "models": {"key": wrong}}))
    return directory / "state.yaml", log


def hash_calls(log: Path) -> int:
    return sum("config --hash" in call for call in fake_docker.calls(log))


def test_a_wrong_cache_does_not_plan_a_recreate_compose_would_not_make(
    remembered_stack: tuple[Path, Path],
) -> None:
    """Recorded labels contradict a wrong cache: one compose call, empty plan, cache corrected, the next plan back to 4 calls."""
    state_file, log = remembered_stack
    state = load_state(state_file)
    plan = reconcile.plan(state)
    assert plan.empty, plan.changes
    assert hash_calls(log) == 1
    remembered = json.loads(hashes_path("mutfxrb").read_text())["models"]["key"]
    assert remembered == recorded_hashes()
    adapter = reconcile.make_adapter(state)
    assert reconcile.plan(state, adapter=adapter).empty
    assert hash_calls(log) == 1
    assert len(adapter.calls) == 4


def test_a_wrong_cache_does_not_fail_an_apply_forever(
    remembered_stack: tuple[Path, Path],
) -> None:
    """The apply that recreated nothing and failed with "config hash differs" forever converges with no mutating call."""
    state_file, log = remembered_stack
    result = reconcile.apply(load_state(state_file), lock=False)
    assert result.error is None, result.error
    assert result.applied == ()
    assert [call for call in result.calls if call.mutating] == []
    assert hash_calls(log) == 1

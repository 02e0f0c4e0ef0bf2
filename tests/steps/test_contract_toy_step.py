"""docs/new-step.md is true: a toy step, registered as the recipe says, runs everywhere.

The toy step is defined here, in-process, without editing reconciler's source: it keeps a file
`toy.txt` holding `hello` in the directory above the state's (outside the images' build
context, which is the state's directory). It is registered in `steps.registry` (both modes'
lists), then run through plan, apply, a saved plan (save, load, apply; and refused once its
facts moved), the plan JSON of the CLI, and the live view, on the mutfx stack observed through
the replaying fake docker (tests/facts/). Every other step sees a converged stack.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from rich.console import Console

from reconciler.cli.live import Progress
from reconciler.cli.main import main
from reconciler.docker.adapter import DockerAdapter
from reconciler.errors import StalePlanError
from reconciler.observe.facts import Snapshot
from reconciler.plans import Action, Change, InSync, Plan, Step
from reconciler.reconcile import loop as reconcile
from reconciler.reconcile.saved_plan import load_plan
from reconciler.secrets.redact import Secrets
from reconciler.state import State, load_state
from reconciler.steps import registry
from reconciler.steps.contract import StepDefinition, plain
from tests.facts import fake_docker

STACK = Path(fake_docker.__file__).parent / "mutfx_stack"
RECIPE = Path(__file__).parents[2] / "docs" / "new-step.md"
# A step name beyond the built-in ones (a real step adds a member to `plans.Step`).
TOY = cast(Step, "toy")
WANTED = "hello\n"


@dataclass(frozen=True)
class ToyFacts:
    """The toy step's facts: the text of its `toy.txt` (None when missing)."""

    path: Path
    text: str | None


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> ToyFacts:
    """The toy's own read: its file."""
    path = state.source.parent.parent / "toy.txt"
    return ToyFacts(path, path.read_text() if path.exists() else None)


def diff(state: State, facts: ToyFacts, earlier: Plan) -> Plan:
    """Pure: an edit when the file does not hold `hello`."""
    if facts.text == WANTED:
        return Plan((), (InSync(TOY, "toy.txt", "holds hello"),))
    reason = "missing" if facts.text is None else f"holds {facts.text.strip()!r}"
    return Plan((Change(TOY, "toy.txt", Action.EDIT, reason, after=WANTED.strip()),))


def apply(
    changes: tuple[Change, ...], state: State, facts: ToyFacts, adapter: DockerAdapter
) -> tuple[Change, ...]:
    """Write the file."""
    facts.path.write_text(WANTED)
    return changes


def fingerprint(state: State, facts: ToyFacts, secrets: Secrets) -> dict[str, object]:
    """By target: the file's text, masked."""
    return {"toy.txt": plain(facts.text, secrets)}


TOY_STEP = StepDefinition(
    step=TOY, observe=observe, diff=diff, fingerprint=fingerprint, apply=apply
)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The mutfx stack (converged, fake docker) with the toy step registered; its state file."""
    directory = tmp_path / "stack"
    shutil.copytree(STACK, directory)
    fake_docker.on_path("converged", tmp_path, monkeypatch, root=directory)
    # The recipe's "a line in STEPS and SWARM_STEPS of reconciler/steps/registry.py".
    monkeypatch.setattr(registry, "STEPS", (*registry.STEPS, TOY_STEP))
    monkeypatch.setattr(registry, "SWARM_STEPS", (*registry.SWARM_STEPS, TOY_STEP))
    return directory / "state.yaml"


def test_the_recipe_names_every_part_of_the_contract() -> None:
    """docs/new-step.md names each field of StepDefinition and each file a step touches."""
    text = RECIPE.read_text(encoding="utf-8")
    for contract_field in dataclasses.fields(StepDefinition):
        assert f"`{contract_field.name}" in text, contract_field.name
    for part in (
        "reconciler/steps/registry.py",
        "reconciler/plans.py",
        "ProgressEvent",
        "tests/steps/test_contract_toy_step.py",
        "tests/steps/test_contract_boundary.py",
        "[tool.importlinter",
    ):
        assert part in text, part


def test_a_step_without_a_fingerprint_cannot_be_made() -> None:
    """The fingerprint is part of the contract: leaving it out fails at once, never silently."""
    with pytest.raises(TypeError, match="fingerprint"):
        StepDefinition(step=TOY, observe=observe, diff=diff, apply=apply)  # type: ignore[call-arg]


def test_plan_and_apply_run_the_toy_step(stack: Path) -> None:
    """The library's plan lists the toy's change, apply makes it, the next plan is in sync."""
    state = load_state(stack)
    steps = reconcile.select_steps(skip=["checks"])
    assert steps[-1] == "toy"
    the_plan = reconcile.plan(state, steps=steps)
    assert [(c.step, c.target, c.action) for c in the_plan.changes] == [("toy", "toy.txt", "edit")]
    with structlog.testing.capture_logs() as logs:
        result = reconcile.apply(state, steps=steps, lock=False)
    assert result.error is None, result.error
    assert [(c.step, c.target) for c in result.applied] == [("toy", "toy.txt")]
    assert (stack.parent.parent / "toy.txt").read_text() == WANTED
    assert "toy" in result.timings
    assert reconcile.plan(state, steps=steps).empty

    # The live view, fed the run's events, shows the toy step and its target done.
    progress = Progress(clock=lambda: 0.0)
    for event in logs:
        progress.feed(event)
    assert progress.phases["toy"].status == "done"
    assert progress.targets["toy"]["toy.txt"].status == "done"
    console = Console(record=True, width=100, force_terminal=False)
    console.print(progress.render(now=1.0))
    shown = console.export_text()
    assert "✓ toy" in shown
    assert "edit      toy.txt" in shown


def test_a_saved_plan_carries_the_toy_step(stack: Path) -> None:
    """save, load and apply a plan file through the toy step; moved facts make it stale."""
    state = load_state(stack)
    out = stack.parent.parent / "toy.plan"  # outside the build context
    reconcile.save_plan(state, out, skip=["checks"])
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["steps"][-1] == "toy"
    assert list(data["fingerprints"]["facts"]["toy"]) == ["toy.txt"]
    assert data["plan"]["changes"] == [
        {
            "step": "toy",
            "target": "toy.txt",
            "action": "edit",
            "reason": "missing",
            "after": "hello",
        }
    ]
    loaded = load_plan(out)
    assert loaded.steps[-1] == "toy"

    (stack.parent.parent / "toy.txt").write_text("bye\n")  # behind the plan's back
    refused = reconcile.apply_plan(out, lock=False)
    assert isinstance(refused.error, StalePlanError)
    assert "observed facts of step toy changed since the plan was made: toy.txt" in str(
        refused.error
    )

    (stack.parent.parent / "toy.txt").unlink()
    result = reconcile.apply_plan(out, lock=False)
    assert result.error is None, result.error
    assert [(c.step, c.target) for c in result.applied] == [("toy", "toy.txt")]


def test_the_cli_plan_json_and_text_show_the_toy_step(stack: Path) -> None:
    """`plan --json` holds the toy's row; the text plan prints it; `--only toy` selects it."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["plan", str(stack), "--json", "--skip", "checks"]) == 2
    rows = json.loads(out.getvalue())["changes"]
    assert [(row["step"], row["target"]) for row in rows] == [("toy", "toy.txt")]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["plan", str(stack), "--only", "toy"]) == 2
    assert "toy           edit      toy.txt  (missing)" in out.getvalue()

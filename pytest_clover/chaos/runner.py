"""Run one Chaos Toolkit experiment in this process, the way pytest-clover runs experiment files.

    python -m pytest_clover.chaos.runner EXPERIMENT --journal J [--configuration JSON] [--events E]
                                         [--load-rate R] [--dry]

The pytest item starts this in a subprocess per experiment: chaoslib keeps module-level state (its activity
cache, global controls) and installs signal handlers in the main thread, so one process runs one experiment,
and pytest's own process (and its xdist workers) never hosts chaoslib. What it adds to ``chaos run``:

* rollbacks always run, also when the method failed or the run was interrupted (Chaos Toolkit's default
  skips them then: its users' most common complaint);
* load: unless the experiment declares the :mod:`pytest_clover.chaos.control` control itself, one is added
  (``--load-rate`` requests/s), so the steady-state probes have traffic to judge;
* the configuration the item passes (which mesh, where the files go) overrides the experiment's;
* ``--events``: one JSON line per stage and activity as it starts and ends, for the run's timeline;
* ``--dry``: Chaos Toolkit's dry mode (``activities``): nothing is executed, no load is started.

The journal is written even when the run fails; the exit status is 0 when a journal was written (the caller
judges it), 2 for an experiment that cannot be loaded or validated (the message is on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONTROL_MODULE = "pytest_clover.chaos.control"
DRY_KEY = "clover_dry_run"


def _declares_load(experiment: Mapping[str, Any]) -> bool:
    controls = experiment.get("controls") or []
    if any(((c.get("provider") or {}).get("module") == CONTROL_MODULE) for c in controls if isinstance(c, dict)):
        return True
    activities = list(experiment.get("method") or [])
    return any(isinstance(a, dict) and (a.get("provider") or {}).get("func") == "start_load" for a in activities)


class _EventWriter:
    """chaoslib RunEventHandler callbacks → JSON lines (one write each, flushed) for the pytest item."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, kind: str, name: str, **data: Any) -> None:
        if self.path is None:
            return
        line = json.dumps({"time": time.time(), "kind": kind, "name": name, **data}, default=str)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _handler(writer: _EventWriter) -> Any:
    from chaoslib.run import RunEventHandler  # type: ignore[import-untyped,unused-ignore]

    class Handler(RunEventHandler):  # type: ignore[misc]
        def start_hypothesis_before(self, experiment: Any) -> None:
            writer.write("stage-start", "steady-state-before")

        def hypothesis_before_completed(self, experiment: Any, state: Any, journal: Any) -> None:
            writer.write("stage-end", "steady-state-before", met=_met(state))

        def start_method(self, experiment: Any) -> None:
            writer.write("stage-start", "method")

        def method_completed(self, experiment: Any, state: Any) -> None:
            writer.write("stage-end", "method")

        def start_hypothesis_after(self, experiment: Any) -> None:
            writer.write("stage-start", "steady-state-after")

        def hypothesis_after_completed(self, experiment: Any, state: Any, journal: Any) -> None:
            writer.write("stage-end", "steady-state-after", met=_met(state))

        def start_rollbacks(self, experiment: Any) -> None:
            writer.write("stage-start", "rollbacks")

        def rollbacks_completed(self, experiment: Any, journal: Any) -> None:
            writer.write("stage-end", "rollbacks")

        def start_activity(self, activity: Any) -> None:
            writer.write("activity-start", str(activity.get("name")), activity_type=activity.get("type"))

        def activity_completed(self, activity: Any, run: Any) -> None:
            status = run.get("status") if isinstance(run, dict) else None
            writer.write("activity-end", str(activity.get("name")), status=status)

    return Handler()


def _met(state: Any) -> bool | None:
    if isinstance(state, dict):
        met = state.get("steady_state_met")
        return None if met is None else bool(met)
    return None


def run(
    experiment_path: Path,
    journal_path: Path,
    *,
    configuration: Mapping[str, Any] | None = None,
    events_path: Path | None = None,
    load_rate: float | None = None,
    dry: bool = False,
) -> dict[str, Any]:
    from chaoslib.experiment import ensure_experiment_is_valid, run_experiment  # type: ignore[import-untyped,unused-ignore]
    from chaoslib.loader import load_experiment  # type: ignore[import-untyped,unused-ignore]
    from chaoslib.types import Dry, Strategy  # type: ignore[import-untyped,unused-ignore]

    experiment: dict[str, Any] = load_experiment(str(experiment_path), verify_tls=False)
    merged = dict(experiment.get("configuration") or {})
    merged.update(configuration or {})
    if dry:
        merged[DRY_KEY] = True
        experiment["dry"] = Dry.ACTIVITIES
    elif load_rate is not None and not _declares_load(experiment):
        experiment.setdefault("controls", []).append(
            {
                "name": "clover-load",
                "provider": {"type": "python", "module": CONTROL_MODULE, "arguments": {"rate": float(load_rate)}},
            }
        )
    experiment["configuration"] = merged
    ensure_experiment_is_valid(experiment)
    writer = _EventWriter(events_path)
    settings: dict[str, Any] = {"runtime": {"rollbacks": {"strategy": "always"}}}
    journal: dict[str, Any] = run_experiment(
        experiment, settings=settings, strategy=Strategy.DEFAULT, event_handlers=[_handler(writer)]
    )
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    journal_path.write_text(json.dumps(journal, indent=1, default=str), encoding="utf-8")
    return journal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_clover.chaos.runner", description=__doc__.split("\n")[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--configuration", default="{}", help="JSON object merged over the experiment's")
    parser.add_argument("--events", type=Path)
    parser.add_argument("--load-rate", type=float)
    parser.add_argument("--dry", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from chaoslib.exceptions import ChaosException  # type: ignore[import-untyped,unused-ignore]

    try:
        journal = run(
            args.experiment,
            args.journal,
            configuration=json.loads(args.configuration),
            events_path=args.events,
            load_rate=args.load_rate,
            dry=args.dry,
        )
    except ChaosException as exc:
        print(f"{args.experiment}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"status": journal.get("status"), "deviated": journal.get("deviated")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

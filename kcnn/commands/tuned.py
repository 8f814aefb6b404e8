"""Did tuning help? A sweep's best trial against the sweep file's own starting settings.

After `kcnn sweep FILE --confirm K --seeds N`, the best trial has run over N seeds. The same N
seeds are run with the settings the sweep file started from (its [[run]] table as written, no
searched value put in), and the two are tested seed for seed: a paired t-test over the seeds
(`kcnn.runs.stats`) when there are two or more, the paired verdict of two single runs on the
same test images (`kcnn.runs.pairing`) when there is one. One sentence, with its interval and p.
"""

from __future__ import annotations

from typing import Any

from kcnn.commands import experiments
from kcnn.runs import groups, pairing, stats
from kcnn.runs.folders import inside

START = "the starting settings"


def start_runs(sweep, seeds: list[int], echo=print) -> list:
    """The sweep file's starting settings over `seeds`, in the sweep folder (runs an earlier
    `--confirm` finished are reused)."""
    from kcnn.runs.browse import RunInfo

    runs = []
    for seed in seeds:
        name = f"confirm-start-seed{seed}"
        done = [RunInfo.load(d) for d in sorted(sweep.folder.glob(f"*-{name}"))]
        done = [r for r in done if r.status == "completed"]
        if done:
            runs.append(done[-1])
            continue
        config = sweep.config({"seed": seed}, name, f"{sweep.path} starting settings")
        summaries = experiments.run_each(
            experiments.Experiment(sweep.path, "", [config]), quiet=True
        )
        runs += [RunInfo.load(d) for s in summaries for d in s["run_dirs"]]
        echo(f"starting settings seed {seed}: test accuracy {runs[-1].test_accuracy:.4f}")
    return runs


def against_start(sweep, trial: int, best: list, echo=print) -> dict[str, Any]:
    """The best trial's runs (`best`, one per seed) against the starting settings over the same
    seeds: the record confirm.json keeps under "tuning", its sentence said with `echo`."""
    seeds = [int(r.settings.get("seed")) for r in best]
    start = start_runs(sweep, seeds, echo)
    name = f"trial {trial}"
    if len(best) == 1:
        judged = pairing.judge(start[0], best[0], (START, name))
        found = {"verdict": judged.as_dict()} if not isinstance(judged, str) else {}
        line = judged if isinstance(judged, str) else judged.sentence()
    else:
        test = stats.difference(
            {groups.pair_key(r): r.test_accuracy for r in start},
            {groups.pair_key(r): r.test_accuracy for r in best},
            "test_accuracy",
            (START, name),
        )
        found, line = {"test": test.as_dict()}, test.sentence()
    echo(f"did tuning help? {line}")
    return {
        "seeds": seeds,
        "start_runs": [inside(sweep.folder, r.folder) for r in start],
        "sentence": line,
        **found,
    }

"""The provenance lines of a leaderboard's header: the data and its split, the budget and
learning rates, the hardware, the code, and the `make bench` commands that remake the table."""

from __future__ import annotations

import json
from collections import defaultdict

from seg_bench.errors import UserError
from seg_bench.protocol.machines import machine_order, trained_on


def provenance_lines(dataset: str, records: list[dict], numbered: bool = False) -> list[str]:
    """``numbered``: the Hardware line numbers several machines, for a table whose timing cells
    name them by number."""
    first = records[0]
    data = first.get("data", {})
    profiles = sorted({r["profile"] for r in records})
    cfg = first["config"]
    precisions = sorted({r.get("precision", "?") for r in records})
    losses = sorted({r["config"]["loss"] for r in records})  # one per target on DSB 2018
    return [
        data_line(dataset, records),
        f"- **Budget**: profile {', '.join(profiles)}; {cfg['max_epochs']} epochs of "
        f"{cfg.get('samples_per_epoch') or 'one pass of'} patches of {data.get('patch_size')} px, "
        f"batch {cfg['batch_size']}, {learning_rates(records, dataset)}, loss {', '.join(losses)}, "
        f"precision {', '.join(precisions)}",
        tta_line(records),
        hardware_line(records, numbered),
        f"- **Code**: {code_line(records)}; {evaluation_line(records)}",
        f"- **Reproduce**: {reproduce_commands(dataset, profiles[0], records)}",
    ]


def tta_line(records: list[dict]) -> str:
    """How the networks were tested: plainly, with D4 test-time augmentation, or (for the
    models named) one, the other or both as variants."""
    tta = {r["model"] for r in records if (r.get("config") or {}).get("tta")}
    plain = {r["model"] for r in records if not (r.get("config") or {}).get("tta")}
    name = "D4 test-time augmentation (the mean of the 8 flips and rotations, `--tta`)"
    if not tta:
        return "- **Testing**: plain (no test-time augmentation)"
    if not plain:
        return f"- **Testing**: {name}"
    parts = [
        f"{how} for {', '.join(sorted(models))}"
        for how, models in (
            (name, tta - plain),
            ("plain", plain - tta),
            ("plain and with TTA, as variants,", tta & plain),
        )
        if models
    ]
    return f"- **Testing**: {'; '.join(parts)}"


def hardware_line(records: list[dict], numbered: bool = False) -> str:
    """The machines that trained the records, then those that only tested them again from
    checkpoints (inference speed then comes from those); several ``numbered`` in that order."""
    order = machine_order(records)
    trainers = {trained_on(r) for r in records}
    number = numbered and len(order) > 1
    names = {m: f"[{i}] {m}" if number else m for i, m in enumerate(order, 1)}
    line = "; ".join(names[m] for m in order if m in trainers)
    retest_only = [names[m] for m in order if m not in trainers]
    if retest_only:
        line += f"; tested again from checkpoints on {', '.join(retest_only)}"
    return f"- **Hardware**: {line}"


def data_line(dataset: str, records: list[dict]) -> str:
    """Where the data came from and how it was split; every split the records used, with the
    models of each, where they differ (a changed split_gap, a test stack added later)."""
    roots = sorted({r.get("data", {}).get("root") or "generated" for r in records})
    models: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        data = r.get("data", {})
        counts = ", ".join(f"{k} {len(v)}" for k, v in data.get("splits", {}).items())
        models[(counts, data.get("split", "see record"))].add(r["model"])
    where = f"`{dataset}` from {', '.join(f'`{x}`' for x in roots)}"
    if len(models) == 1:
        [(counts, split)] = models
        return f"- **Data**: {where}; images per split: {counts}; split: {split}"
    each = [
        f"images per split {counts}, split {split} ({', '.join(sorted(ms))})"
        for (counts, split), ms in sorted(models.items())
    ]
    return f"- **Data**: {where}; **the records differ in their split**: {'; '.join(each)}"


def code_line(records: list[dict]) -> str:
    """The commits that trained the records, then those that re-tested any of them."""
    trained = sorted({r.get("commit", "?") for r in records})
    line = f"commit {', '.join(trained)}"
    for field, how in (("rescored", "tested again (--rescore)"), ("tested", "test variant scored")):
        commits = sorted({r[field].get("commit", "?") for r in records if r.get(field)})
        line += f"; {how} at {', '.join(commits)}" if commits else ""
    return line


def evaluation_line(records: list[dict]) -> str:
    """Which evaluation code scored the records: one version, several that score these records
    alike, or a warning about the mix."""
    from seg_bench.evaluation.evaluate import (
        EVALUATION_VERSION,
        VERSION_CHANGES,
        evaluation_version,
        is_stale,
    )

    counts: dict[int, int] = defaultdict(int)
    for r in records:
        counts[evaluation_version(r)] += 1
    stale = sum(is_stale(r) for r in records)
    warning = (
        f" (**stale**: {stale} record(s) would score differently under v{EVALUATION_VERSION}; "
        "`seg-bench bench ... --rescore` re-tests them from their checkpoints)"
        if stale
        else ""
    )
    if len(counts) == 1:
        return f"evaluation v{next(iter(counts))}" + warning
    mix = ", ".join(f"v{v} ({n} records)" for v, n in sorted(counts.items()))
    # Alike where no change newer than a record, up to the newest record, reaches it; records
    # of different configurations may still differ in scoring version (binary vs boundary3).
    newest = max(counts)
    reached = (
        evaluation_version(r) < v <= newest and reaches(r)
        for r in records
        for v, (_, reaches) in VERSION_CHANGES.items()
    )
    if not any(reached):
        changes = "; ".join(
            f"v{v}: {VERSION_CHANGES[v][0]}"
            for v in sorted(VERSION_CHANGES)
            if min(counts) < v <= max(counts)
        )
        return (
            f"evaluation {mix}, which score these records alike (changed since: {changes})"
            + warning
        )
    return (
        f"**evaluation versions mixed**: {mix}; the same predictions may score differently "
        "across them; `seg-bench bench ... --rescore` re-tests the older ones from their "
        "checkpoints"
    )


def learning_rates(records: list[dict], dataset: str | None = None) -> str:
    """ "adam lr 0.001", or each model's optimizer and lr where they differ, and how the
    profile chose them."""
    settings = {r["model"]: f"{r['config']['optimizer']} lr {r['config']['lr']:g}" for r in records}
    distinct = set(settings.values())
    text = (
        distinct.pop()
        if len(distinct) == 1
        else "; ".join(f"{m} {v}" for m, v in sorted(settings.items()))
    )
    by_source: dict[str, set[str]] = {}
    for r in records:
        if source := lr_source(r, dataset):
            by_source.setdefault(source, set()).add(r["model"])
    if len(by_source) > 1:  # say which models each source covers
        parts = [f"{', '.join(sorted(ms))}: {s}" for s, ms in sorted(by_source.items())]
        return text + f" (learning rates: {'; '.join(parts)})"
    return text + "".join(f" (learning rates: {s})" for s in by_source)


def lr_source(record: dict, dataset: str | None) -> str | None:
    """How ``record``'s rate was chosen: the profile's ``lr_source`` today where the profile
    still gives that model the record's optimizer and rate (a grid run after the record may
    have confirmed it), else the note the record was made with."""
    from seg_bench.config import resolve_config

    config = record.get("config") or {}
    try:
        today = resolve_config(
            dataset, record["model"], record["profile"], config_file=config.get("config_file")
        )
    except (UserError, KeyError, TypeError):  # no dataset, or a model or profile that is gone
        return config.get("lr_source")
    same = (today.optimizer, today.lr) == (config.get("optimizer"), config.get("lr"))
    return today.lr_source if same and today.lr_source else config.get("lr_source")


def reproduce_commands(dataset: str, profile: str, records: list[dict]) -> str:
    """The `make bench` commands that remake ``records``: one per label source and set of
    options; each names its models, and options the profile does not set go in ARGS."""
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    seeds: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        group = (r.get("labels", "manual"), non_default_args(dataset, profile, r))
        groups[group].add(r["model"])
        seeds[group] = max(seeds[group], r["seed"] + 1)
    commands = []
    for (labels, args), models in sorted(groups.items()):
        extra = f" MODELS={','.join(sorted(models))}"
        extra += "" if labels == "manual" else f" LABELS={labels}"
        extra += f" ARGS='{args}'" if args else ""
        commands.append(
            f"`make bench DATASET={dataset} PROFILE={profile} SEEDS={seeds[(labels, args)]}{extra}`"
        )
    return "; ".join(commands)


def non_default_args(dataset: str, profile: str, record: dict) -> str:
    """``--set`` options for the fields of a record's config that differ from what the profile
    resolves to today (seed, labels and purely operational fields aside)."""
    from seg_bench.config import resolve_config
    from seg_bench.training.run_dir import key_fields

    config = record.get("config") or {}
    try:
        default = key_fields(
            resolve_config(dataset, record["model"], profile, config_file=config.get("config_file"))
        )
    except UserError:  # a model or profile file that is gone: nothing to compare with
        return ""
    ran = key_fields(config)
    if set(default) - set(ran):  # written by a version with other fields: no fair comparison
        return ""
    args = [f"--config {config['config_file']}"] if config.get("config_file") else []
    for k in sorted(ran):
        if k not in ("labels", "dataset", "model", "profile") and ran[k] != default.get(k):
            value = ran[k] if isinstance(ran[k], str) else json.dumps(ran[k])
            args.append(f"--set {k}={value}".replace("'", '"'))
    return " ".join(args)

"""CLI group: set-up — models, data sets, the catalogue, the structured model's training."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from cdarec.assets import catalog, ensure_asset
from cdarec.cli.common import console, err_console, log, progress_bar, settings_from
from cdarec.cloud.catalogue.store import open_catalogue
from cdarec.graph.runtime import Resources
from cdarec.llm.factory import parse_spec
from cdarec.service.training import background_training
from cdarec.settings import Settings

TEST_MODELS = ("smollm2-135m",)


def cmd_models_pull(args: argparse.Namespace) -> int:
    s = settings_from(args)
    names = args.names or _default_models(s, args.tests)
    for name in names:
        with err_console.status(f"pulling {name} ..."):
            paths = ensure_asset(s.home, "models", name, log)
        console.print(f"[green]ok[/green] {name}: {paths[0]}")
    return 0


def _default_models(s: Settings, tests: bool) -> list[str]:
    names = []
    for spec in (s.device_model, s.cloud_model):
        provider, name = parse_spec(spec)
        if provider in ("llamacpp", "embedded") and ("models", name) in catalog():
            names.append(name)
    if tests:
        names.extend(TEST_MODELS)
    return list(dict.fromkeys(names))


def cmd_models_list(args: argparse.Namespace) -> int:
    s = settings_from(args)
    table = Table("name", "file", "present", "description")
    for (kind, name), asset in sorted(catalog().items()):
        if kind != "models":
            continue
        path = s.home / "models" / asset.files[0].filename
        table.add_row(
            name, asset.files[0].filename, "yes" if path.exists() else "no", asset.description
        )
    console.print(table)
    return 0


def cmd_data_pull(args: argparse.Namespace) -> int:
    s = settings_from(args)
    for name in args.names or ["ml-1m", "ml-100k"]:
        paths = ensure_asset(s.home, "datasets", name, log)
        console.print(f"[green]ok[/green] {name}: {paths[0].parent}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    s = settings_from(args)
    res = Resources(s)
    ds = res.dataset
    cat = open_catalogue(s, ds)
    with progress_bar(f"indexing {ds.name}") as update:
        report = cat.index(ds.items, progress=update)
    console.print(f"catalogue {cat.name}: {cat.count()} items ({report})")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    """Everything a first run needs: models, embedder, data, catalogue, sequence model."""
    s = settings_from(args)
    cmd_models_pull(argparse.Namespace(**{**vars(args), "names": None}))
    ensure_asset(s.home, "embedders", s.embedder, log)
    datasets = args.datasets or [s.dataset]
    for name in datasets:
        ds_args = argparse.Namespace(**{**vars(args), "dataset": name})
        if name in ("ml-1m", "ml-100k"):
            ensure_asset(s.home, "datasets", name, log)
        cmd_index(ds_args)
        res = Resources(settings_from(ds_args))
        with err_console.status(f"fitting the structured user model on {name} ..."):
            res.device.sequence_model  # noqa: B018  (built and cached on disk)
        if not args.no_train and (train_log := background_training(res)) is not None:
            console.print(
                f"SASRec for {name} is training in the background (about 20 minutes on 2 "
                f"cores, at low priority; log: {train_log}). Until it is done the device uses "
                "the transition model; the chat switches by itself, and says so, when it is "
                "ready."
            )
    console.print("[green]set-up complete[/green]")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from cdarec.seqrec.structured import structured_blend

    res = Resources(settings_from(args))
    model = res.sasrec_model(err_console, retrain=args.retrain)
    console.print(
        f"SASRec for {res.dataset.name}: {model.n_items} items, hidden {model.arch.hidden}, "
        f"transition weight {structured_blend(model):g} (chosen on validation); "
        "the device side uses it from now on (settings: sequence_model = auto)"
    )
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """setup, models, data, index, train"""
    s = sub.add_parser("setup", parents=[common], help="pull models and data, build the catalogue")
    s.add_argument("--tests", action="store_true", help="also pull the small test model")
    s.add_argument("--datasets", nargs="*", help="data sets to prepare (default: --dataset)")
    s.add_argument(
        "--no-train",
        action="store_true",
        help="do not start training the SASRec structured model in the background (by "
        "default set-up starts it when none is cached; the chat switches to it when done)",
    )
    s.set_defaults(func=cmd_setup)

    m = sub.add_parser("models", help="list or pull model files").add_subparsers(
        dest="action", required=True
    )
    mp = m.add_parser("pull", parents=[common], help="download, assemble and verify models")
    mp.add_argument("names", nargs="*", help="model names (default: the configured ones)")
    mp.add_argument("--tests", action="store_true", help="also pull the small test model")
    mp.set_defaults(func=cmd_models_pull)
    m.add_parser("list", parents=[common], help="known models").set_defaults(func=cmd_models_list)

    d = sub.add_parser("data", help="data sets").add_subparsers(dest="action", required=True)
    dp = d.add_parser("pull", parents=[common], help="download MovieLens (research use only)")
    dp.add_argument("names", nargs="*", help="ml-1m, ml-100k (default both)")
    dp.set_defaults(func=cmd_data_pull)

    sub.add_parser(
        "index", parents=[common], help="build or update the Chroma catalogue (idempotent)"
    ).set_defaults(func=cmd_index)

    t = sub.add_parser(
        "train",
        parents=[common],
        help="train the structured user model (SASRec) on the cloud side, cached for the device",
    )
    t.add_argument("--retrain", action="store_true", help="train again even if cached")
    t.set_defaults(func=cmd_train)

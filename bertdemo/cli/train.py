"""`bertdemo train`: fine-tune on the labels in the database and register the result as a new
model version, headless, on the same path as the Train tab (Services -> JobRunner.run_sync).
Under `accelerate launch --num_processes N -m bertdemo.cli.train` every process runs the same
loop data-parallel; only the main one writes the database and the models folder."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import replace

from bertdemo.config import Settings
from bertdemo.services import Services
from bertdemo.training.accelerator import device_setting, launch_state
from bertdemo.training.config import PRECISIONS, STARTS, TRAIN_SETS, TrainConfig, TrainingError
from bertdemo.training.loop import fit, start_model

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()

    def bounds(name: str) -> str:  # TrainConfig owns the limits; the help shows them
        return f" ({TrainConfig.limit(name).describe()})"

    p = argparse.ArgumentParser(
        prog="bertdemo train",
        description="Fine-tune the classifier on the labels in the database and register the result "
                    "as a new model version (the same path as the Train tab).")
    p.add_argument("--epochs", type=float, default=d.epochs,
                   help="passes over the training split" + bounds("epochs"))
    p.add_argument("--learning-rate", type=float, default=d.learning_rate,
                   help="peak AdamW learning rate" + bounds("learning_rate"))
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="examples per optimizer step" + bounds("batch_size"))
    p.add_argument("--max-length", type=int, default=d.max_length,
                   help="WordPieces per example (truncated beyond)" + bounds("max_length"))
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seed for the split, shuffling and head init" + bounds("seed"))
    p.add_argument("--general-weight", type=float, default=d.general_weight,
                   help="loss weight of the bundled general tweets against the airline tweets' and people's labels"
                        + bounds("general_weight"))
    p.add_argument("--logit-adjustment", type=float, default=d.logit_adjustment,
                   help="tau of the logit-adjusted loss: learn the classes' evidence without the training set's class "
                        "shares (0: plain cross-entropy)" + bounds("logit_adjustment"))
    p.add_argument("--freeze-encoder", action="store_true", help="train only the classification head")
    p.add_argument("--init-from", choices=STARTS, default=d.init_from,
                   help="base: the pre-trained encoder with a new head; active: continue from the serving version")
    p.add_argument("--train-on", choices=TRAIN_SETS, default=d.train_on,
                   help="all: every label; changed: a quick retrain on the labels changed since the active version "
                        "+ a replay sample (BERTDEMO_QUICK_RETRAIN_REPLAY; needs --init-from active)")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto = bf16 autocast where the hardware supports it")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="stratified validation share" + bounds("val_fraction"))
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps (smoke runs)" + bounds("max_steps"))
    p.add_argument("--no-activate", action="store_true", help="register the version but keep serving the active one")
    p.add_argument("--user", default="cli", help="recorded as the run's owner")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                             max_length=args.max_length, seed=args.seed, freeze_encoder=args.freeze_encoder,
                             precision=args.precision, val_fraction=args.val_fraction, max_steps=args.max_steps,
                             init_from=args.init_from, general_weight=args.general_weight,
                             logit_adjustment=args.logit_adjustment, train_on=args.train_on)
    except ValueError as exc:
        build_parser().error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bertdemo.config import Settings  # the CLI is the top of the stack: wire it up here
    from bertdemo.services import Services

    settings = Settings.from_env()
    try:
        state = launch_state()
    except TrainingError as exc:
        log.error("training failed: %s", exc)
        return 1
    if state is None:  # one process: the path the app's Train tab takes
        services = Services.create(settings)
        services.ensure_dataset()
        return _train_and_register(services, config, args)

    # several processes (accelerate launch): all train, only the main one writes the database and
    # the models folder; each uses its own device (cuda:<local rank>, or the CPU)
    settings = replace(settings, device=device_setting(state.device))
    try:
        if state.is_main_process:
            services = Services.create(settings)
            services.ensure_dataset()
        state.wait_for_everyone()  # the others read the examples the main process imported
        if state.is_main_process:
            return _train_and_register(services, config, args)
        return _follow(settings, config, state.process_index, state.num_processes)
    finally:
        state.destroy_process_group()


def _train_and_register(services: Services, config: TrainConfig, args: argparse.Namespace) -> int:
    try:
        run = services.jobs.run_sync(config, user=args.user, activate=not args.no_activate)
    except TrainingError as exc:
        log.error("training failed: %s", exc)
        return 1
    print(run.report)
    log.info("registered version %s (macro-F1 %.4f)", run.version_name, run.macro_f1)
    return 0


def _follow(settings: Settings, config: TrainConfig, rank: int, world: int) -> int:
    """A non-main process of a data-parallel launch: the same inputs and the same `fit` as the
    main process's run, read-only; nothing is registered or saved here."""
    from bertdemo.db.engine import make_engine
    from bertdemo.training.inputs import read_inputs
    from bertdemo.training.registry import Registry

    engine = make_engine(settings.database_url)  # the main process created the tables
    try:
        inputs = read_inputs(settings, engine, Registry(settings, engine), config)
        clf = start_model(inputs.source, settings.labels, settings.device, settings.max_length, config)
        result = fit(clf, inputs.data, config)
    except TrainingError as exc:
        log.error("process %d of %d: training failed: %s", rank, world, exc)
        return 1
    finally:
        engine.dispose()
    log.info("process %d of %d (world size %d) finished %d steps on %d training examples; "
             "the main process registers the version", rank, world, world,
             result.history[-1]["step"] if result.history else 0, result.train_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

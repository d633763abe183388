"""Fine-tuning throughput and quality: our loop vs the HF `Trainer`, in one run.

    pip install -r bench/requirements.txt
    python bench/bench_training.py [--train 3000] [--epochs 1] [--seed 42] [--same-recipe]

Same data (a stratified sample of the bundled tweets), same base model, same epochs, batch size
and learning rate. The Trainer runs with its defaults, inputs padded to max length as the usual
recipe does; ours runs the app's loop and recipe (TrainConfig's defaults: no dropout, warm-up and
weight decay) with length-grouped dynamic padding, bf16 autocast where native, SDPA's math kernel
and fused AdamW. `--same-recipe` also runs the Trainer with our dropout, warm-up and weight decay,
to separate the recipe's F1 from the loop's. Both start from the packaged encoder with the head
the app trains (TrainConfig's pooling), seeded alike. Prints samples/s, the ratio and the
validation macro-F1s, then a name=value line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sklearn.metrics import f1_score  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from bertdemo.config import BUNDLED_DATASET, Settings  # noqa: E402
from bertdemo.datasets import load_bundled, stratified_split  # noqa: E402
from bertdemo.model.classifier import Classifier  # noqa: E402
from bertdemo.training.config import TrainConfig, TrainingData  # noqa: E402
from bertdemo.training.loop import fit, set_dropout


class Encoded(torch.utils.data.Dataset):
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {k: torch.tensor(v[i]) for k, v in self.enc.items()} | {"labels": torch.tensor(int(self.labels[i]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=3000, help="training examples (stratified sample)")
    ap.add_argument("--val", type=int, default=1000, help="validation examples")
    ap.add_argument("--epochs", type=float, default=1.0, help="epochs for both")
    ap.add_argument("--batch-size", type=int, default=32, help="batch size for both")
    ap.add_argument("--max-length", type=int, default=64, help="max tokens (Trainer pads to this)")
    ap.add_argument("--seed", type=int, default=42, help="both runs' seed (head init, order)")
    ap.add_argument("--same-recipe", action="store_true",
                    help="also run the Trainer with our recipe (dropout, warm-up, weight decay): is the F1 the loop's?")
    args = ap.parse_args()

    settings = Settings.from_env()
    rows = load_bundled(BUNDLED_DATASET, settings.max_chars)
    labels = settings.labels
    y_all = np.array([labels.index(r.label) for r in rows])
    _, idx = stratified_split(y_all, (args.train + args.val) / len(rows), seed=0)
    texts = [rows[i].text for i in idx]
    y = y_all[idx]
    tr, va = stratified_split(y, args.val / len(y), seed=0)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length,
                      evals_per_epoch=1, seed=args.seed)

    # --- HF Trainer, padded to max length: its defaults, and (--same-recipe) our recipe
    def trainer_run(same_recipe: bool) -> tuple[float, float]:
        # both start from the same model: the packaged encoder with the head the app trains (its pooling)
        torch.manual_seed(args.seed)  # the same fresh head for both
        hf = Classifier.load(settings.model_source, labels, precision="fp32", pooling=cfg.new_head_pooling)
        recipe = {}
        if same_recipe:
            if cfg.dropout is not None:
                set_dropout(hf.model, cfg.dropout)
            # transformers 5: warmup_steps takes a ratio of the total steps when under 1
            recipe = {"warmup_steps": cfg.warmup_ratio, "weight_decay": cfg.weight_decay}
        pad = lambda ts: hf.tokenizer(ts, truncation=True, max_length=args.max_length, padding="max_length")  # noqa: E731
        with tempfile.TemporaryDirectory() as out:
            targs = TrainingArguments(output_dir=out, num_train_epochs=args.epochs, learning_rate=cfg.learning_rate,
                                      per_device_train_batch_size=args.batch_size, report_to="none",
                                      save_strategy="no", logging_strategy="no", seed=cfg.seed, use_cpu=True, **recipe)
            trainer = Trainer(model=hf.model, args=targs, train_dataset=Encoded(pad([texts[i] for i in tr]), y[tr]))
            t = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - t
        hf.model.eval()
        return seconds, f1_score(y[va], hf.predict_proba([texts[i] for i in va]).argmax(1), average="macro")

    hf_s, hf_f1 = trainer_run(False)
    same = trainer_run(True) if args.same_recipe else None

    # --- ours
    torch.manual_seed(args.seed)
    ours = Classifier.load(settings.model_source, labels, pooling=cfg.new_head_pooling)
    t = time.perf_counter()
    res = fit(ours, TrainingData([texts[i] for i in tr], y[tr], [texts[i] for i in va], y[va]), cfg)
    ours_s = time.perf_counter() - t  # includes its validation passes, which the Trainer run skips
    n = len(tr) * args.epochs
    print(f"\n{len(tr)} training / {len(va)} validation tweets, {args.epochs:g} epoch(s), batch {args.batch_size}, "
          f"threads {torch.get_num_threads()}\n")
    print("| path | samples/s | vs Trainer | validation macro-F1 |")
    print("|---|---|---|---|")
    print(f"| HF Trainer, defaults, padded to {args.max_length} | {n / hf_s:.0f} | 1.0x | {hf_f1:.4f} |")
    if same:
        print(f"| HF Trainer, our recipe (dropout {cfg.dropout}, warm-up {cfg.warmup_ratio}, weight decay "
              f"{cfg.weight_decay}) | {n / same[0]:.0f} | {hf_s / same[0]:.2f}x | {same[1]:.4f} |")
    weighting = "class-weighted" if cfg.class_weighted else "unweighted"
    print(f"| ours ({res.precision}, dynamic padding, fused AdamW, {weighting}, {cfg.pooling} pooling, dropout "
          f"{cfg.dropout}) | {n / ours_s:.0f} | "
          f"{hf_s / ours_s:.2f}x | {res.macro_f1:.4f} |")
    print(f"\nspeedup_vs_trainer={hf_s / ours_s:.2f} ours_samples_per_s={n / ours_s:.0f} "
          f"trainer_samples_per_s={n / hf_s:.0f} ours_macro_f1={res.macro_f1:.4f} trainer_macro_f1={hf_f1:.4f}"
          + (f" trainer_same_recipe_macro_f1={same[1]:.4f}" if same else ""))


if __name__ == "__main__":
    main()

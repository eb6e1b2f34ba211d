"""simclr_lib: the executable companion to Zhang & Cao, *Understanding the Benefits of SimCLR
Pre-Training in Two-Layer Convolutional Neural Networks* (arXiv 2409.18685).

Batched, seeded simulations of the paper's data model (Definition 3.1), its two networks,
SimCLR pre-training (Lemma 5.1, Theorem 5.3), fine-tuning (Theorem 5.5) and direct supervised
training (Theorem 4.3), with the diagnostics and sweeps the book's chapters call.
"""
from .config import DataConfig, PretrainConfig, SupervisedConfig
from .data import Dataset, augment, cell_seed, make_dataset, stream
from .diagnostics import alignment, coefficient_summary, decompose, power_matrix, spectrum
from .losses import infonce, logistic, nt_xent
from .models import activation, cnn_logits, encode, init_cnn, init_encoder, split_filters
from .report import Verdict, glue, verdict
from . import analysis, checks
from .pipelines import SimCLRResult, run_finetune, run_pretrain, run_simclr_finetune, run_supervised
from .training import (CoefficientSpace, DivergenceError, History, PretrainResult, Stepper,
                       WeightSpace, fit, make_stepper, pretrain)

from . import plotting, sweeps  # sl.sweeps.*, sl.plotting.* after `import simclr_lib as sl`

__version__ = "0.1.0"

"""EE-559 digit-pair study: predict whether the first of two MNIST digits is <= the second."""

from .data import generate_pair_sets
from .models import MODELS, build_model, count_parameters
from .train import TrainConfig, train_model

__all__ = [
    "generate_pair_sets", "MODELS", "build_model", "count_parameters", "TrainConfig", "train_model",
]

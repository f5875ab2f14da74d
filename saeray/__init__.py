"""saeray: extract, label and score sparse-autoencoder features on Ray."""

__version__ = "0.1.0"

"""One module per published SAE layout; each exposes ``FORMAT`` (see ``common.SAEFormat``)."""

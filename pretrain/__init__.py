"""sarjepa pretraining: ViT encoders, targets, masking, methods and the training engine."""

# The folder imported under its bare name (e.g. ``import pretrain`` from the repository root).
if __name__ != "sarjepa.pretrain":
    raise ImportError(f"import sarjepa.pretrain, not {__name__} (one namespace: sarjepa)")

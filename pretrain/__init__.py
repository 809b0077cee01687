"""sarjepa pretraining: ViT encoders, targets, masking, methods and the training engine."""

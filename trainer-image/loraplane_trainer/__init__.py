"""LoRAPlane trainer: dataset checks, split, augmentation, LoRA training, evaluation and publishing."""

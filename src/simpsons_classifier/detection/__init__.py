"""Multi-character detection: scenes composed from a classification dataset, a torchvision detector on the
toolkit's backbones, COCO evaluation and scene tags, prediction."""

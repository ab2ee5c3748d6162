"""Detection of several characters per image: training scenes composed from a classification dataset
(:mod:`.scenes`) and real boxes read from Kaggle or COCO annotation files (:mod:`.annotations`)."""

"""Finetune jobs: a version (catalog or Keras) trained further, its architecture unchanged,
and compared with its parent on held-out data."""

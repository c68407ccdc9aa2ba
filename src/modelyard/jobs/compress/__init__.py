"""Compress and distill jobs: a child version made from a parent (quantized, pruned, cast,
exported, or a student distilled from a teacher) and compared with it on held-out data."""

"""What every stage of a run shares: loading models and tokenizers safely, ranks, progress, run folders and run records, atomic checkpoint files."""

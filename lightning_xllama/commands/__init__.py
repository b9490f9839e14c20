"""The command line: ``fit`` and the other Trainer commands (LightningCLI), and the package's tools (evaluate, export, data stats, scaling)."""

from lightning_xllama.cli import main

main()

from lightning_xllama.commands.main import main

main()

from supervisor.cli_main import main

main()

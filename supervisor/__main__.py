from supervisor.fastpath import main

main()

from expwatch.cli import main

main()

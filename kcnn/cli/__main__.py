from kcnn.cli import main

main()

from lume.cli import main

main()

"""`python -m api.cli`: the `faqloop` command line."""

from api.cli.main import main

main()

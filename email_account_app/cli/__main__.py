"""`python -m email_account_app.cli`: the same as the `email-account-app` command."""

from . import main

main()

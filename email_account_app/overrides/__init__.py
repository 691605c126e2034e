"""Core's Email Account and Email Domain, with the app's behaviour: ``email_account.py`` and
``email_domain.py`` (registered in hooks.py); ``compose.py`` builds the classes per site."""

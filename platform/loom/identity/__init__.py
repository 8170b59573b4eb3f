"""Users and teams: accounts, sign-in sessions and tokens, and the principal each request
acts as (``loom.principal.Principal``)."""

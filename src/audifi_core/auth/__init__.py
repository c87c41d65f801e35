"""Identity: accounts, sessions, two-factor, wallets and Sign-In with Ethereum."""

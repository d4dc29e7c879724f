"""The user service: accounts, argon2id passwords, RS256 tokens and the JWKS."""

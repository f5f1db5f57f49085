"""The `referral` command: a thin click CLI over the dsl, compiler and settlement packages."""

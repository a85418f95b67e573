"""Environments an action-conditioned world model learns from and plans in, in pure JAX."""

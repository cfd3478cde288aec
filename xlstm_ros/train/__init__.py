"""Synthetic data, training loops and evaluation for the two models."""

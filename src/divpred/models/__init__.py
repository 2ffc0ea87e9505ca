"""Convex models with closed-form per-point gradients and Hessians."""

from .multinomial import MultinomialLogit

__all__ = ["MultinomialLogit"]

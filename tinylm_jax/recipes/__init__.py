"""Recipes of the tiny-LM papers built on the core; nothing in the core imports them."""

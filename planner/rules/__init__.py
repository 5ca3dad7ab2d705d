"""Rewrite rules, each a small pure function ``rule(plan, catalog) -> plan``, applied in order."""

from planner.rules.recognise_vector_topk import recognise_vector_topk

REWRITE_RULES = (recognise_vector_topk,)

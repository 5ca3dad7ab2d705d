"""Rewrite rules, each a small pure function ``rule(plan, catalog) -> plan``, applied in order."""

from planner.rules.recognise_count_star import recognise_count_star
from planner.rules.recognise_vector_range import recognise_vector_range
from planner.rules.recognise_vector_topk import recognise_vector_topk

REWRITE_RULES = (recognise_count_star, recognise_vector_topk, recognise_vector_range)

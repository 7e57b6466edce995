"""A judge that takes too long on proposals containing 7: what a parser stuck on hostile input
looks like to the referee (imported by the worker processes, so kept free of JAX)."""

import time

from o1jax.selfplay.problems import judge as real_judge


def judge(text, bounds):
    if "7" in text:
        time.sleep(30)
    return real_judge(text, bounds)

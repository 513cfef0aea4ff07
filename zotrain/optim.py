"""Optimizers as pure ``(init, update)`` pairs over flat float32 vectors (optax style).

    opt = optim.adam(1e-3)
    state = opt.init(params)
    params, state = opt.update(grad, state, params)

A learning rate is a number or a schedule (a function of the step count).
State is a NamedTuple of arrays and counts, so checkpoints can store it.
"""

import math
from typing import Callable, NamedTuple

import numpy as np


class Optimizer(NamedTuple):
    init: Callable
    update: Callable


class SgdState(NamedTuple):
    count: int


class MomentumState(NamedTuple):
    count: int
    velocity: np.ndarray


class AdamState(NamedTuple):
    count: int
    m: np.ndarray
    v: np.ndarray


def _check_lr(lr):
    if callable(lr):
        return lr
    if not (isinstance(lr, (int, float, np.number)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be > 0 (or a schedule), got {lr!r}")
    return constant(float(lr))


# -- schedules ---------------------------------------------------------------

def constant(value):
    return lambda count: value


def step_decay(value, every, factor=0.1):
    """``value * factor ** (count // every)``."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return lambda count: value * factor ** (count // every)


def exponential(value, decay):
    """``value * decay ** count``."""
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    return lambda count: value * decay ** count


def cosine(value, total, final=0.0):
    """Cosine decay from ``value`` to ``final`` over ``total`` steps, then ``final``."""
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    return lambda count: final + (value - final) * 0.5 * (1 + math.cos(math.pi * min(count, total)
                                                                        / total))


# -- optimizers --------------------------------------------------------------

def sgd(lr):
    lr = _check_lr(lr)

    def update(grad, state, params):
        return (params - np.float32(lr(state.count)) * grad).astype(np.float32), \
            SgdState(state.count + 1)

    return Optimizer(lambda params: SgdState(0), update)


def momentum(lr, beta=0.9, nesterov=False):
    lr = _check_lr(lr)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")

    def update(grad, state, params):
        v = beta * state.velocity + grad
        step = beta * v + grad if nesterov else v
        return (params - np.float32(lr(state.count)) * step).astype(np.float32), \
            MomentumState(state.count + 1, v.astype(np.float32))

    return Optimizer(lambda params: MomentumState(0, np.zeros_like(params, np.float32)), update)


def adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    lr = _check_lr(lr)
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"b1 and b2 must be in [0, 1), got {b1}, {b2}")

    def update(grad, state, params):  # in place on fresh arrays: few temporaries
        t = state.count + 1
        m = state.m * np.float32(b1)
        m += np.float32(1 - b1) * grad
        v = state.v * np.float32(b2)
        g2 = grad * np.float32(1 - b2)
        g2 *= grad
        v += g2
        den = np.divide(v, np.float32(1 - b2 ** t), out=g2)
        np.sqrt(den, out=den)
        den += np.float32(eps)
        step = m / np.float32(1 - b1 ** t)
        step *= np.float32(lr(state.count))
        step /= den
        return np.subtract(params, step, out=step, dtype=np.float32), AdamState(t, m, v)

    zeros = lambda params: np.zeros_like(params, np.float32)  # noqa: E731
    return Optimizer(lambda params: AdamState(0, zeros(params), zeros(params)), update)


def sign(lr):
    """``params -= lr * sign(grad)`` (coordinates with a zero estimate stay)."""
    lr = _check_lr(lr)

    def update(grad, state, params):
        return (params - np.float32(lr(state.count)) * np.sign(grad)).astype(np.float32), \
            SgdState(state.count + 1)

    return Optimizer(lambda params: SgdState(0), update)


OPTIMIZERS = {"sgd": sgd, "momentum": momentum, "adam": adam, "sign": sign}


def get(name, lr, **kwargs):
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](lr, **kwargs)


class PartitionState(NamedTuple):
    states: tuple


def _own(state, index, n):
    """A state's arrays restricted to ``index`` where they span all ``n`` coordinates (the
    state of a checkpoint written before partitions kept their own coordinates only)."""
    if isinstance(state, np.ndarray):
        return state[index] if state.shape == (n,) and len(index) != n else state
    if isinstance(state, tuple):
        items = [_own(x, index, n) for x in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state


def partition(optimizers, masks):
    """Apply ``optimizers[label]`` to the coordinates where ``masks[label]`` is true.

    Labels must cover every coordinate exactly once; e.g. an exact-gradient head
    and zeroth-order cores with different learning rates.
    """
    labels = list(optimizers)
    if set(labels) != set(masks):
        raise ValueError(f"optimizers {sorted(labels)} and masks {sorted(masks)} must share labels")
    cover = np.sum([np.asarray(masks[l], bool) for l in labels], axis=0)
    if not np.all(cover == 1):
        raise ValueError("masks must cover every parameter exactly once")

    index = {l: np.flatnonzero(np.asarray(masks[l], bool)) for l in labels}

    def init(params):  # each optimizer sees only its own coordinates
        return PartitionState(tuple(optimizers[l].init(params[index[l]]) for l in labels))

    def update(grad, state, params):
        new, states = np.array(params, np.float32, copy=True), []
        for label, st in zip(labels, state.states):
            i = index[label]
            p, st = optimizers[label].update(grad[i], _own(st, i, len(params)), params[i])
            new[i] = p
            states.append(st)
        return new, PartitionState(tuple(states))

    return Optimizer(init, update)

"""Worked answers to lesson 5's "write the backward" exercises and lesson 6's Nesterov step.
Try first: open this afterwards.

Not a lesson itself. The tests check that each answer passes its exercise's check.
"""

from __future__ import annotations

import numpy as np


def sigmoid_backward(y, g):
    """dL/dx for y = sigmoid(x): dy/dx = y (1 - y)."""
    return g * y * (1 - y)


def maxpool_backward(x, g, k, stride):
    """dL/dx for F.max_pool2d(x, k, stride) without padding: each window's g goes to its
    arg-max; overlapping windows add (+=)."""
    dx = np.zeros_like(x)
    n, c, ho, wo = g.shape
    for i in range(ho):
        for j in range(wo):
            win = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            flat = win.reshape(n, c, -1).argmax(axis=-1)  # the winner in each window
            r, q = np.unravel_index(flat, (k, k))
            nn_, cc = np.indices((n, c))
            dx[nn_, cc, i * stride + r, j * stride + q] += g[:, :, i, j]
    return dx


def avgpool_backward(g, x_shape, k, stride):
    """dL/dx for F.avg_pool2d(x, k, stride) without padding: each window's g spread evenly,
    g / k^2 to each of its elements; overlapping windows add."""
    dx = np.zeros(x_shape)
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            rows, cols = slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)
            dx[:, :, rows, cols] += g[:, :, i : i + 1, j : j + 1] / (k * k)
    return dx


def batchnorm_backward(x, gamma, g, eps):
    """dL/dx for training-mode batch norm over (N, H, W): lesson 5's compact form."""
    axes = (0, 2, 3)
    mu = x.mean(axis=axes, keepdims=True)
    s = np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    xhat = (x - mu) / s
    dxhat = g * gamma.reshape(1, -1, 1, 1)
    mean = dxhat.mean(axis=axes, keepdims=True)
    return (dxhat - mean - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True)) / s


def _window_sum(a, size):
    """Sum over the channels c - size//2 .. c + (size-1)//2 (zeros beyond the edges)."""
    lo, hi = size // 2, (size - 1) // 2
    padded = np.pad(a, ((0, 0), (lo, hi), (0, 0), (0, 0)))
    return sum(padded[:, i : i + a.shape[1]] for i in range(size))


def lrn_backward(x, g, size, alpha, beta, k):
    """dL/dx for y = x / d^beta, d = k + alpha/size * (sum of x^2 over the channel window).

    x_c reaches the output twice: directly in y_c, and through d_c' of every channel c' whose
    window holds c (the same window, mirrored): dx = g d^-beta - 2 alpha/size beta x *
    (mirrored window sum of g x d^(-beta-1)).
    """
    d = k + alpha / size * _window_sum(x * x, size)
    through_d = g * x * d ** (-beta - 1)
    lo, hi = size // 2, (size - 1) // 2
    padded = np.pad(through_d, ((0, 0), (hi, lo), (0, 0), (0, 0)))  # the mirrored window
    mirrored = sum(padded[:, i : i + x.shape[1]] for i in range(size))
    return g * d**-beta - 2 * alpha / size * beta * x * mirrored


def nesterov_step(p, grad, v, lr, mu, wd):
    """Lesson 6, exercise 1: one step of SGD with Nesterov momentum and weight decay, PyTorch's
    convention (md.optim.SGD(..., nesterov=True)): the velocity as in plain momentum, but the
    step looks ahead, along the gradient plus mu times the new velocity."""
    g = grad + wd * p
    v = mu * v + g
    return p - lr * (g + mu * v), v

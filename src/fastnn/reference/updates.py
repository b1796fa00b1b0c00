"""The twins of the optimizers' kernels: the SGD (momentum, Nesterov) and Adam
updates, with their L1/L2 penalties and decoupled weight decay."""
import numpy as np

from .._hyper import Hyper, adam_constants


def sgd_update(W, grad, velocity, learning_rate, momentum=0.0, l1=0.0, l2=0.0,
               nesterov=False):
    """``velocity = momentum*velocity - lr*(grad + l2*W + l1*sign(W)); W += velocity``
    (Nesterov: ``W += momentum*velocity - lr*(grad + l2*W + l1*sign(W))``)."""
    _sgd_step(W, grad, velocity, learning_rate, momentum, l1, l2, np.empty_like(W),
              np.empty_like(W) if (l1 or nesterov) else None, nesterov)


def _sgd_step(W, grad, velocity, learning_rate, momentum, l1, l2, step, sign=None,
              nesterov=False):
    """:func:`sgd_update` with its temporaries in ``step`` (and ``sign`` for L1
    or Nesterov)."""
    if l2:
        np.multiply(W, l2, out=step)
        step += grad
    else:
        np.copyto(step, grad)
    if l1:
        np.sign(W, out=sign)
        sign *= l1
        step += sign
    velocity *= momentum
    step *= learning_rate
    velocity -= step
    if nesterov:  # W += momentum*velocity - lr*g
        np.multiply(velocity, momentum, out=sign)
        sign -= step
        W += sign
    else:
        W += velocity


def adam_update(W, grad, m, v, learning_rate, t, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, l1=0.0, l2=0.0):
    """Adam step ``t`` (1 for the first): ``g = grad + l2*W + l1*sign(W)``,
    ``m = beta1*m + (1-beta1)*g``, ``v = beta2*v + (1-beta2)*g*g``,
    ``W = W*(1 - lr*weight_decay) - a_t*m / (sqrt(v)*s_t + eps)``,
    ``a_t = lr/(1-beta1**t)``, ``s_t = 1/sqrt(1-beta2**t)``."""
    hyper = Hyper("adam", learning_rate, beta1=beta1, beta2=beta2, eps=eps,
                  weight_decay=weight_decay, l1=l1, l2=l2)
    _adam_step(W, grad, m, v, hyper, adam_constants(hyper, t), True, np.empty_like(W),
               np.empty_like(W), np.empty_like(W))


def _adam_step(W, grad, m, v, hyper, constants, penalise, g, t1, t2):
    """:func:`adam_update` with the step's ``constants`` ``(a_t, s_t, decay)`` and its
    temporaries in ``g``, ``t1``, ``t2``; ``penalise``: L1, L2 and the decay
    (weights) or none of them (biases). The dtype's constants are rounded as
    the compiled epilogue's."""
    dt = W.dtype.type
    a_t, s_t, decay = constants
    if penalise and hyper.l2:
        np.multiply(W, dt(hyper.l2), out=g)
        g += grad
    else:
        np.copyto(g, grad)
    if penalise and hyper.l1:
        np.sign(W, out=t1)
        t1 *= dt(hyper.l1)
        g += t1
    m *= dt(hyper.beta1)  # m = b1*m + c1*g
    np.multiply(g, dt(1.0 - hyper.beta1), out=t1)
    m += t1
    np.multiply(g, g, out=t1)  # v = b2*v + c2*(g*g)
    t1 *= dt(1.0 - hyper.beta2)
    v *= dt(hyper.beta2)
    v += t1
    np.sqrt(v, out=t1)  # W = W*decay - (a_t*m) / (sqrt(v)*s_t + eps)
    t1 *= dt(s_t)
    t1 += dt(hyper.eps)
    np.multiply(m, dt(a_t), out=t2)
    t2 /= t1
    if penalise and dt(decay) != 1:
        W *= dt(decay)
    W -= t2

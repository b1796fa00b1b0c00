"""scikit-learn's end-of-epoch logic (loss curve, tolerance, invscaling and
adaptive learning rates, early stopping on a validation score) as a fastnn
callback, and the history of an estimator's several ``MLP.fit`` calls."""
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..training import Callback

#: sklearn's adaptive schedule stops once the learning rate is at or below this
_MIN_ADAPTIVE_LR = 1e-6


class _SklearnSchedule(Callback):
    """scikit-learn's end-of-epoch logic as a fastnn callback.

    After each epoch: the loss curve, ``t_``, the validation score, the
    no-improvement count, the invscaling/adaptive learning rate. When the rate
    changes the current ``MLP.fit`` is stopped after the epoch and the
    estimator resumes with the new rate (same weights, momentum and shuffling
    sequence); when training has converged, it is stopped for good.
    """

    def __init__(self, est, X_val, y_val, sw_val, n_train, batch_size, incremental,
                 mean_weight=1.0):
        if sw_val is not None and not np.sum(sw_val) > 0:
            sw_val = None  # validation rows all of weight 0: a weighted score is undefined
        self.est, self.X_val, self.y_val, self.sw_val = est, X_val, y_val, sw_val
        self.n_train, self.batch_size, self.incremental = n_train, batch_size, incremental
        # the penalties' divisor in the loss: scikit-learn's, a batch's weight sum
        # (its rows without weights), here from the mean weight of the rows
        self.penalty_rows = batch_size * mean_weight
        self.done = False
        self.best = None
        self.val_scores = []

    def on_epoch_end(self, epoch, logs=None):
        est, model = self.est, self.model
        est.n_iter_ += 1
        est.t_ += self.n_train
        penalty = sum(float(np.dot(W.ravel(), W.ravel())) for W in model.coefs_)
        loss = (est._LOSS_FACTOR * float(logs["loss"])
                + 0.5 * est.alpha * penalty / self.penalty_rows)
        if est.l1:
            loss += est.l1 * sum(float(np.abs(W).sum()) for W in model.coefs_) / self.penalty_rows
        est.loss_curve_.append(loss)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, loss))
        if est.early_stopping:
            score = est._val_score(model, self.X_val, self.y_val, self.sw_val)
            self.val_scores.append(score)
            est.validation_scores_.append(score)
            if est.verbose:
                print("Validation score: %f" % score)
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best = [a.copy() for a in model.coefs_ + model.intercepts_]
        else:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)
        lr = est._lr
        schedule = est.learning_rate if est.solver == "sgd" else "constant"  # as scikit-learn
        if schedule == "invscaling":
            est._lr = float(est.learning_rate_init) / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if est.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
            if schedule != "adaptive" or est._lr <= _MIN_ADAPTIVE_LR:
                if est.verbose:
                    print(msg + " Stopping.")
                self._stop()
                return
            est._lr /= 5.0
            est._no_improvement_count = 0
            if est.verbose:
                print(msg + " Setting learning rate to %f" % est._lr)
        if self.incremental:
            self._stop()
            return
        if est.n_iter_ == est.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % est.max_iter, ConvergenceWarning)
            self._stop()
            return
        if est._lr != lr:
            model.stop_training = True  # resume with the new rate

    def _stop(self):
        self.done = True
        self.model.stop_training = True


def _extend(history, part, val_scores, key):
    """Append the epochs of ``part`` (one ``MLP.fit``) to ``history`` (``key``:
    the validation scores' name)."""
    first = len(history.epoch)
    history.epoch.extend(range(first, first + len(part.epoch)))
    for name, values in part.history.items():
        history.history.setdefault(name, []).extend(values)
    if val_scores:
        history.history[key] = list(val_scores)
    history.params = dict(part.params)
    history.diverged = history.diverged or part.diverged
    history.interrupted = history.interrupted or part.interrupted

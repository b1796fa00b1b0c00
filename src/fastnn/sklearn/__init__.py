"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor`` on fastnn's trainer
(needs ``pip install "fastnn[sklearn]"``).

Replace ``from sklearn.neural_network import MLPClassifier`` (or
``MLPRegressor``) with ``from fastnn.sklearn import MLPClassifier`` (also
``fastnn.MLPClassifier``, ``fastnn.MLPRegressor``): same parameter names and
meanings, same attributes, and they work in ``Pipeline``, ``GridSearchCV``,
``cross_val_score``, ``clone`` and pickle. Importing :mod:`fastnn` does not
import scikit-learn; this module does.

>>> import numpy as np
>>> from fastnn.sklearn import MLPClassifier
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 4)); y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
>>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.05, tol=1e-3,
...                     random_state=0).fit(X, y)
>>> clf.classes_.tolist(), clf.score(X, y) > 0.95, clf.predict_proba(X[:2]).shape
(['no', 'yes'], True, (2, 2))
>>> clf.n_outputs_, clf.coefs_[-1].shape, clf.out_activation_
(1, (16, 1), 'logistic')
>>> from fastnn.sklearn import MLPRegressor
>>> t = X[:, 0] - 2 * X[:, 1]
>>> reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=300,
...                    random_state=0).fit(X, t)
>>> reg.score(X, t) > 0.95, reg.predict(X[:2]).shape, reg.out_activation_
(True, (2,), 'identity')

The estimators by concern: ``_base`` (the parameters, their validation and
the fit both share), ``_schedule`` (scikit-learn's end-of-epoch logic as a
fastnn callback), ``_classifier`` and ``_regressor``.
"""
from ._classifier import MLPClassifier
from ._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]

"""The parameters and attributes that the estimators' docstrings share
(MLPClassifier and MLPRegressor add their own)."""

COMMON_PARAMS_DOC = """
    hidden_layer_sizes : tuple of int, default=(100,)
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
    solver : {"adam", "sgd"}, default="adam"
        ``"adam"``: :class:`fastnn.optim.Adam` with ``beta_1``, ``beta_2``,
        ``epsilon``. scikit-learn's Adam divides by ``sqrt(v) + epsilon``
        after folding the bias corrections into the step size; fastnn's (as
        the paper's Algorithm 1 and PyTorch) by ``sqrt(v_hat) + epsilon``: the
        same update except for where the tiny ``epsilon`` enters.
        ``"sgd"``: :class:`fastnn.optim.SGD` with ``momentum`` and
        ``nesterovs_momentum``. ``"lbfgs"`` raises ``NotImplementedError``.
    alpha : float, default=1e-4
        L2 penalty with scikit-learn's convention: scikit-learn adds
        ``alpha/(2*b) * sum ||W||^2`` to the mean loss of each batch of ``b``
        samples (``b``: the batch's weight sum with ``sample_weight``), so its
        gradient is ``grad + (alpha/b) * W``. fastnn's penalty ``l2`` enters as
        ``grad + l2 * W``, so this estimator trains with ``l2 = alpha /
        batch_size`` (biases unpenalised in both), scaled per batch by
        ``batch_size / sum(w)`` with ``sample_weight``. This is exact for every
        full batch; when ``batch_size`` does not divide the number of training
        samples, scikit-learn's last, smaller batch of ``r`` samples per epoch
        gets ``alpha/r``, fastnn's ``alpha/batch_size``.
    batch_size : int or "auto", default="auto"
        ``"auto"``: ``min(200, n_samples)``; larger values are clipped to the
        number of samples, with scikit-learn's warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        As scikit-learn: ``"invscaling"`` sets the rate after each epoch to
        ``learning_rate_init / (t_ + 1) ** power_t`` (``t_``: samples seen);
        ``"adaptive"`` divides it by 5 whenever ``n_iter_no_change``
        consecutive epochs fail to improve the training loss (or the
        validation score, with ``early_stopping``) by ``tol``, and stops once
        it is ``<= 1e-6``.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs; reaching it without converging warns ``ConvergenceWarning``.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        An int is fastnn's ``seed`` (weights, shuffling, validation split):
        same int, data and parameters give bit-identical weights. A
        RandomState or None (NumPy's global one) draws the seed from it.
    tol : float, default=1e-4
    verbose : bool, default=False
        Prints the loss (and validation score) of each epoch, as scikit-learn.
    warm_start : bool, default=False
        ``fit`` continues from the previous weights (with a fresh optimizer,
        as scikit-learn: momentum and learning rate restart).
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
        Nesterov's momentum, in scikit-learn's (and Keras') form:
        ``v = momentum*v - lr*g``, ``W += momentum*v - lr*g``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for the
        classifier where every class has two rows or more and both parts can
        hold one of each; else a plain random split), stop when the validation score (accuracy, or R² for the
        regressor; weighted with ``sample_weight``) has not improved by ``tol``
        for ``n_iter_no_change`` epochs, and keep the weights of the best one.
    validation_fraction : float, default=0.1
        In [0, 1); used only with ``early_stopping``, which needs it above 0.
    beta_1, beta_2, epsilon : Adam's, as scikit-learn's.
    max_fun :
        Accepted for compatibility; used only by ``"lbfgs"``, which fastnn
        does not have.
    n_iter_no_change : int or ``np.inf``, default=10
        Epochs without a ``tol`` improvement that stop the fit (or, with
        ``learning_rate="adaptive"``, divide the rate); ``np.inf``: never.
    l1 : float, default=0.0
        fastnn's L1 penalty (no scikit-learn equivalent), scaled as ``alpha``'s
        L2: ``l1 * sum |W| / batch_size`` added to the loss (and to
        ``loss_curve_``), ``l1 * sign(W) / batch_size`` to the gradient, so a
        sample weight ``w`` still trains as ``w`` repeated rows.
    dtype : {"float32", "float64"}, default="float32"
        Precision of weights and arithmetic; inputs are converted once.
    n_threads : int or None, default=None
        Threads of fastnn's training loop and of BLAS while fitting and
        predicting, for this estimator only (None: fastnn's setting,
        :func:`fastnn.set_num_threads`, else one training thread per usable
        core within the limits a parent set, and BLAS's default). Under a
        parallel search (``GridSearchCV(n_jobs=...)``) the default already
        follows the limit joblib's workers set (``OMP_NUM_THREADS``): see
        :mod:`fastnn.threads`.
    augment : fastnn.augment.Augment, mapping or None, default=None
        fastnn's random deformations of training rows that are images (see
        :mod:`fastnn.augment`), made afresh every epoch in the compiled loop;
        off by default. Scoring and prediction never augment.
    exact_sums : bool or "auto", default="auto"
        Make each batch's weight and bias gradients as float64 sums with the
        sample weights applied in them (fastnn's ``fit(exact_sums=True)``), so
        that a row of integer weight ``w`` trains as ``w`` copies of it, in
        float32 too: scikit-learn's meaning of ``sample_weight``, to the last
        bit but for rare double roundings (see ``FitConfig.exact_sums``). It
        costs time where the weight gradients' products dominate (measured:
        0.8-1.1x an epoch's time on 100-unit networks, 1.4-1.65x at [784,
        800, 10]; the README's measurements). ``"auto"``: on, but for a sparse
        X sparse enough (density at most
        ``fastnn.kernels.CSR_PRODUCTS_MAX_DENSITY``) for the first layer's
        products to run on its CSR rows, which they cannot do with exact sums
        (there the sums round in float32 as without the option).
"""

COMMON_ATTRS_DOC = """
    history_ : fastnn.History
        Every epoch of the last ``fit`` (``partial_fit`` calls append), with
        the validation score when ``early_stopping``.
    model_ : fastnn.MLP
        The trained network (save it with ``model_.save``).

    ``fit(X, y, sample_weight=None)`` and ``partial_fit`` take scikit-learn's
    sample weights (finite, >= 0, not all 0) with its normalisation: a
    batch's loss (and L2 penalty) is divided by the batch's weight sum
    (fastnn's ``loss_reduction="weighted_mean"``). Ctrl-C stops ``fit``
    within one compiled chunk of batches with a warning ("Training
    interrupted by user.", as scikit-learn) and leaves the estimator fitted
    with the weights so far (with ``early_stopping``, the best epoch's).
"""

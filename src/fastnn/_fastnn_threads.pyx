# cython: language_level=3
"""Marker library of fastnn's training threads for threadpoolctl.

threadpoolctl finds thread pools by the shared libraries loaded in the
process; this module's file name (``_fastnn_threads*``) is the one that
fastnn's controller (:mod:`fastnn.threads`) matches. It holds no code.
"""

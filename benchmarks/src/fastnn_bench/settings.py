"""What ``fastnn bench`` trains and with what: the networks, batch sizes and
optimiser of the timed epoch, and the trainers' names."""
from fastnn import reference

#: The benchmark's default network, batch sizes and optimiser.
LAYERS = (784, 128, 10)
#: The networks of the issue's study (``--layers 784,128,10 784,800,10 784,256,256,256,10``).
STUDY_LAYERS = ((784, 128, 10), (784, 800, 10), (784, 256, 256, 256, 10))
#: `fastnn bench --wide`: networks whose weights do not fit in a core's L2
#: (the last, mnist-deep-elastic.yaml's, with widths that are not powers of
#: two: their rows do not alias in L1 or the TLB as 1024 and 2048 do).
WIDE_LAYERS = ((784, 1024, 1024, 10), (784, 2048, 2048, 10), (784, 1500, 1000, 500, 10))
WIDE_BATCH_SIZES = (32, 128, 512)
BATCH_SIZES = (1, 10, 32, 128, 512)
#: Images of a batch-1 epoch (the first ones): a full one takes the NumPy
#: trainer and PyTorch most of a minute per repeat.
BATCH1_SAMPLES = 6000
ACTIVATION = "relu"
LEARNING_RATE = 0.01
MOMENTUM = 0.9
L2 = 1e-3
DTYPE = "float32"
SEED = 0

#: Trainer names, in table order.
TRAINERS = ("fastnn", "numpy", "jax", "torch", "sklearn", "floor", "floor_scipy")
LABELS = {
    "fastnn": "fastnn (compiled)",
    "numpy": "NumPy trainer",
    "jax": "JAX (jit epoch)",
    "torch": "PyTorch CPU",
    "sklearn": "scikit-learn MLP",
    "floor": "GEMM floor (NumPy)",
    "floor_scipy": "GEMM floor (SciPy)",
}
#: Trainers that are the epoch's GEMMs alone, not training.
FLOORS = ("floor", "floor_scipy")
#: Optional trainers and the module that must import for each.
OPTIONAL = {"jax": "jax", "torch": "torch", "sklearn": "sklearn.neural_network"}
#: Kernel modules of the two fastnn trainers (None: the compiled default).
KERNELS = {"fastnn": None, "numpy": reference}

"""Models: the registry of weights, the face detector and the face embedders."""

import os

# torch's OpenMP threads spin while they wait for work. Where the cores are shared (decoder
# threads, ONNX Runtime's pool, other processes) the spinning takes them from the threads that
# have work: on 2 loaded cores analyze ran 1.7-2.5x faster with passive waiting. It only counts
# when set before torch is first imported: the engine's modules (and its settings) import this
# package before torch. A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

"""A freshly initialised keras.applications.MobileNet for training from random initialisation.
Usage: .venv-peers/bin/python benchmarks/make_init_model.py ALPHA SEED OUT.h5
32x32x3 input, 10 classes, weights=None, TensorFlow 2.15's tf.keras initialisers (Glorot uniform
kernels, BatchNorm gamma 1, beta 0, moving mean 0, variance 1), seeded; saved with model.save in
the classic Keras 2 HDF5 layout, as ../shared/models/train_reference.py saves its result.
"""
import sys
import tensorflow as tf

alpha, seed, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
tf.keras.utils.set_random_seed(seed)
model = tf.keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=alpha, weights=None, classes=10)
model.save(out)
print(f"{out}: MobileNet alpha {alpha}, {model.count_params():,} parameters, seed {seed}")

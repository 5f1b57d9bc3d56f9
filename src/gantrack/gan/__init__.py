"""The GAN: networks, losses, the keras.Model that trains them, the training loop with its
checkpoints and callbacks, and where it runs (precision, tf.distribute). No tracking here:
MLflow hooks in through callbacks that gantrack.tracking provides."""

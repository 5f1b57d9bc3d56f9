"""What gantrack reads and writes: project paths, files written whole, images, and the checks
every file from outside passes before it is read (sizes, archives, Keras models)."""

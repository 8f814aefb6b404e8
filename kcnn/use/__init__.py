"""Using a finished run: predict on new images, look inside the model, export it."""

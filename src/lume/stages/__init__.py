"""The pipeline's stages, each on the layers above it: building a target (`target`),
unlearning (`unlearning`), evaluation (`evaluation`) and robustness attacks (`attacks`)."""

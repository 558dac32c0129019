"""Neural networks: the LIF neuron core, the ANN, the SNN, the hybrid and their presets."""

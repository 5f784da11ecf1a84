"""Cloud side: training the structured model (SASRec, PyTorch) that the device then runs."""

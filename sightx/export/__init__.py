"""sightx-export: a checkpoint as an ONNX model (float, and int8 on request), a torch.export program (.pt2) or a
model folder to share (config.json, model.safetensors, a model card), each verified against PyTorch as it is written."""

"""Networks: backbones, heads, devices."""

"""Image maths and decoding: arrays and bytes in, arrays and bytes out; no files, no processes."""
